"""ClientApp: FedArena's local training (``fedarena.fl_core.flower.train_reply``) with FedArena mods.

Clients ``0 .. malicious-1`` (partition ids) run the attack's mod when the attack is a
client-side one (label flip, backdoor, sign flip of the own update, noise, scaling);
``privacy`` (a ``PRIVACY_DEFENSES`` name, ``privacy-args`` JSON) adds its mods on every
client.
"""

from __future__ import annotations

import json
from functools import cache

from flwr.app import Context, Message
from flwr.clientapp import ClientApp
from flwr.clientapp.typing import ClientAppCallable
from torch import nn

import fedarena.attacks.poisoning  # noqa: F401  (registers the attacks)
import fedarena.defenses.privacy  # noqa: F401  (registers the privacy defenses)
from fedarena.attacks.flower import poisoning_mod
from fedarena.defenses.flower import privacy_mods
from fedarena.fl_core.data import ImageDataset
from fedarena.fl_core.flower import ArrayCodec, client_id_of, train_reply

from .server_app import OMNISCIENT
from .task import Setup, client_datasets, make_model


@cache
def _federation(setup: Setup) -> tuple[list[ImageDataset], nn.Module, ArrayCodec]:
    """This process's data and worker model (built once, reused across rounds and nodes)."""
    parts, test = client_datasets(setup)
    worker = make_model(setup, test)
    return parts, worker, ArrayCodec.of(worker)


def make_client_app(setup: Setup | None = None, attack: str | None = "sign_flip", attack_args: dict | None = None,
                    privacy: str | None = None, privacy_args: dict | None = None) -> ClientApp:
    """A ClientApp for ``setup`` (None: read it, and the attack, from the run config)."""
    mods_of: dict[tuple, list] = {}

    def fedarena_mods(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
        cfg = dict(context.run_config)
        s = setup if setup is not None else Setup.from_config(cfg)
        att = str(cfg["attack"]) if "attack" in cfg else attack
        att_args = json.loads(str(cfg["attack-args"])) if "attack-args" in cfg else (attack_args or {})
        priv = str(cfg["privacy"]) if cfg.get("privacy") else privacy
        priv_args = json.loads(str(cfg["privacy-args"])) if "privacy-args" in cfg else (privacy_args or {})
        cid = client_id_of(context)
        key = (s, att, json.dumps(att_args, sort_keys=True), priv, json.dumps(priv_args, sort_keys=True),
               cid in s.malicious_ids)
        if key not in mods_of:
            _, worker, _ = _federation(s)
            mods = []
            if att and att not in OMNISCIENT and cid in s.malicious_ids:
                mods.append(poisoning_mod(att, seed=s.seed, num_clients=s.num_clients, model=worker, **att_args))
            if priv:
                mods += privacy_mods(priv, seed=s.seed, model=worker, **priv_args)
            mods_of[key] = mods
        chain = call_next
        for mod in reversed(mods_of[key]):  # the first mod is the outermost, as in ClientApp(mods=...)
            chain = _bind(mod, chain)
        return chain(msg, context)

    app = ClientApp(mods=[fedarena_mods])

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        s = setup if setup is not None else Setup.from_config(dict(context.run_config))
        parts, worker, codec = _federation(s)
        cid = client_id_of(context)
        return train_reply(msg, worker=worker, data=parts[cid], training=s.training, client_id=cid, seed=s.seed,
                           codec=codec)

    return app


def _bind(mod, call_next: ClientAppCallable) -> ClientAppCallable:  # noqa: ANN001
    return lambda msg, context: mod(msg, context, call_next)


app = make_client_app()
