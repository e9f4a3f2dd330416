-- For the rest of the transaction, or until reset_plans: every statement planned for its own
-- parameters and the tables' current size, never by a cached generic plan (see
-- postgres.fetch_planned_afresh).
SET LOCAL plan_cache_mode = force_custom_plan
