CREATE TABLE a (id int);
-- a comment before the statement
SELECT set_config('search_path', 'a', false);
