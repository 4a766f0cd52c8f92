"""Corporate actions: ``ledger`` (splits and dividends), ``adjustment`` (the pure plan and its
factors, the jump check) and ``adjusted_bars`` (the store rebuilt from raw bars and the plan)."""
