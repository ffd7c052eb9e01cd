-- name: GetAuthor :one
SELECT * FROM authors
WHERE id = $1 LIMIT 1;

-- name: SetTenant :exec
-- The SET is on the line below the annotation.
SET search_path TO tenant;

-- name: LockJob :one
SELECT pg_advisory_lock($1);

-- rdsproxy:allow-pin released by UnlockJob in the same request, on a direct connection
-- name: UnlockJob :one
SELECT pg_advisory_unlock($1);

-- name: NextID :one
SELECT nextval('ids'); -- rdsproxy:allow-pin
