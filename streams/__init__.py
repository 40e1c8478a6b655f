"""Stream processing for fangxian: the pure rules (``streams.rules``) and the rule engine that
holds their window state (``streams.engine``). The Faust agents wrap the engine; nothing here
does I/O or reads a clock."""
