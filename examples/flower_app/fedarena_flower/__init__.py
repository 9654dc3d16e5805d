"""A Flower app (ServerApp + ClientApp) training with FedArena defenses against FedArena fedarena.attacks."""
