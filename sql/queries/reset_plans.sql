-- Back to the plan cache's configured mode (ends custom_plans).
RESET plan_cache_mode
