-- Accounts: users, saved addresses, refresh-token families.
-- The `commerce` schema is created by the migrator (create-schemas in commerce-pg/sqlx.toml).
-- Constraint names are spelled out: the adapter maps some of them to domain errors
-- (e.g. users_email_key -> Conflict "email_taken"), so they are part of its contract.
-- Timestamps are timestamptz, which keeps microseconds.

CREATE TABLE commerce.users (
    id            uuid CONSTRAINT users_pkey PRIMARY KEY,
    -- Lower-cased by the core's Email type, so a plain unique index is case-insensitive.
    email         text NOT NULL CONSTRAINT users_email_key UNIQUE,
    password_hash text NOT NULL,
    first_name    text NOT NULL,
    last_name     text NOT NULL,
    phone         text,
    -- Role::as_str / UserStatus::as_str.
    role          text NOT NULL CONSTRAINT users_role_check CHECK (role IN ('customer', 'admin', 'superadmin')),
    status        text NOT NULL CONSTRAINT users_status_check CHECK (status IN ('active', 'suspended')),
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL
);
-- The admin list: oldest first, optionally filtered by role and status.
CREATE INDEX users_created_idx ON commerce.users (created_at, id);
CREATE INDEX users_role_status_idx ON commerce.users (role, status, created_at);

CREATE TABLE commerce.addresses (
    id          uuid CONSTRAINT addresses_pkey PRIMARY KEY,
    user_id     uuid NOT NULL REFERENCES commerce.users (id) ON DELETE CASCADE,
    label       text,
    first_name  text NOT NULL,
    last_name   text NOT NULL,
    line1       text NOT NULL,
    line2       text,
    city        text NOT NULL,
    state       text,
    postal_code text NOT NULL,
    country     text NOT NULL,
    phone       text,
    is_default  boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL
);
CREATE INDEX addresses_user_idx ON commerce.addresses (user_id, created_at);
-- At most one default address per user, enforced by the database. (Writers that move the
-- default also lock the owner's users row, so concurrent moves queue instead of tripping it.)
CREATE UNIQUE INDEX addresses_one_default_idx ON commerce.addresses (user_id) WHERE is_default;

-- One family per sign-in; rotation adds tokens to it; reuse of a spent token revokes it.
CREATE TABLE commerce.token_families (
    id         uuid CONSTRAINT token_families_pkey PRIMARY KEY,
    user_id    uuid NOT NULL REFERENCES commerce.users (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL,
    -- Set once, when the session ends (logout, reuse detected, suspension, password change).
    revoked_at timestamptz
);
CREATE INDEX token_families_user_idx ON commerce.token_families (user_id);

CREATE TABLE commerce.refresh_tokens (
    -- SHA-256 of the token (hex); the token itself is never stored.
    token_hash text CONSTRAINT refresh_tokens_pkey PRIMARY KEY,
    family_id  uuid NOT NULL REFERENCES commerce.token_families (id) ON DELETE CASCADE,
    user_id    uuid NOT NULL REFERENCES commerce.users (id) ON DELETE CASCADE,
    expires_at timestamptz NOT NULL,
    created_at timestamptz NOT NULL,
    -- Set when the token is rotated away; presenting it again is reuse.
    spent_at   timestamptz
);
CREATE INDEX refresh_tokens_family_idx ON commerce.refresh_tokens (family_id);
