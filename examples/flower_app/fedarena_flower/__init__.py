"""A Flower app (ServerApp + ClientApp) training with FedArena defenses against FedArena attacks."""
