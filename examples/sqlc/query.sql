-- name: CreateAuthor :one
INSERT INTO sqlc_authors (name, bio) VALUES ($1, $2)
RETURNING *;

-- name: GetAuthor :one
SELECT * FROM sqlc_authors
WHERE id = $1 LIMIT 1;

-- name: ListAuthorsByName :many
SELECT * FROM sqlc_authors
WHERE name = $1
ORDER BY id;

-- name: UpdateAuthorBio :exec
UPDATE sqlc_authors SET bio = $2
WHERE id = $1;

-- name: DeleteAuthor :exec
DELETE FROM sqlc_authors
WHERE id = $1;
