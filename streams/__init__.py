"""Stream processing for fangxian: the pure rules (``streams.rules``) and the rule engine that
holds their window state (``streams.engine``). The stages (``streams.stages``) drive the engine;
the rules and the engine do no I/O and read no clock."""
