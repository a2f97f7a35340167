-- Runs once, as the superuser, when the compose stack's PostgreSQL volume is first created.
-- pgcached's own role: it reads the catalog and follows changes by logical decoding
-- (test_decoding, on a temporary slot: nothing else to create); applications keep logging in
-- as themselves.
CREATE ROLE pgcached LOGIN REPLICATION PASSWORD 'pgcached_secret';
CREATE ROLE app LOGIN PASSWORD 'app_secret';
CREATE DATABASE app OWNER app;
\connect app
-- The verifier function of pgcached's auth query (TLS clients' SCRAM logins; README, "Logins").
CREATE OR REPLACE FUNCTION public.pgcached_scram_verifier(role_name text) RETURNS text
    LANGUAGE sql STABLE STRICT SECURITY DEFINER SET search_path = pg_catalog
    AS $$ SELECT rolpassword FROM pg_authid
          WHERE rolname = role_name AND rolcanlogin
            AND rolpassword LIKE 'SCRAM-SHA-256$%' $$;
REVOKE ALL ON FUNCTION public.pgcached_scram_verifier(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.pgcached_scram_verifier(text) TO "pgcached";
-- A small table to try it with.
CREATE TABLE products (id int PRIMARY KEY, name text NOT NULL, price numeric(10,2) NOT NULL);
INSERT INTO products SELECT g, 'product ' || g, (g % 100) + 0.99 FROM generate_series(1, 1000) g;
ALTER TABLE products OWNER TO app;
