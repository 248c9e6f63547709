"""cardpool's controller runtime: passes that decide (cardpool.core) on a copy of what the watches hold, an
applier that carries out their effects on bounded workers, most urgent first, and expectations that keep a
lagging watch from causing a second decision. It knows nothing of kopf: cardpool.handlers feeds it."""
