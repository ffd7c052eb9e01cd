-- +goose Up
CREATE TABLE jobs (id bigint PRIMARY KEY);
SET lock_timeout = '5s';

-- +goose StatementBegin
CREATE FUNCTION touch() RETURNS trigger AS $$
BEGIN
  SET LOCAL search_path TO public;
  RETURN NEW;
END;
$$ LANGUAGE plpgsql;
-- +goose StatementEnd

CREATE TEMP TABLE scratch (id int);

-- +goose Down
DROP TABLE jobs;
