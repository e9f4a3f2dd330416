-- Where the server keeps its data (superusers and pg_read_all_settings only; refused otherwise).
SELECT current_setting('data_directory')
