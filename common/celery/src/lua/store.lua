-- Stores a task's state the way Celery's Redis backend does (SET/SETEX + PUBLISH of the same
-- JSON), but never replaces a SUCCESS. For states that end no delivery (STARTED, RETRY) and for
-- result backends in another database than the broker.
-- KEYS[1] celery-task-meta-<id>; ARGV[1] JSON, ARGV[2] TTL in seconds (0: none).
-- Returns 1 when written, 0 when a SUCCESS was already there.
if stored_success(KEYS[1]) then return 0 end
store_result(KEYS[1], ARGV[1], ARGV[2])
return 1
