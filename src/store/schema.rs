//! Versioned schema. Each entry moves the database from version `i` to
//! `i + 1` inside one transaction; `PRAGMA user_version` records where a
//! database stands. Never edit a released entry: append a new one.

pub const MIGRATIONS: &[&str] = &[
    // 1: the spool (the seed's sms_spool), its attempts, DNCR, imports.
    r#"
    CREATE TABLE message (
        id            INTEGER PRIMARY KEY,
        dialer        TEXT    NOT NULL,
        destination   TEXT    NOT NULL,          -- as the client wrote it
        number        TEXT,                      -- E.164, NULL when it cannot be a number
        text          TEXT    NOT NULL,
        priority      INTEGER NOT NULL,
        state         INTEGER NOT NULL,          -- codes of docs/architecture.md
        client_id     TEXT,
        import_id     INTEGER REFERENCES import(id),
        encoding      TEXT    NOT NULL,
        segments      INTEGER NOT NULL,
        attempts      INTEGER NOT NULL DEFAULT 0,
        gateway       TEXT,                      -- gateway of the last attempt
        channel       TEXT,                      -- last channel used, "gateway:port"
        reference     INTEGER,                   -- our reference of the last attempt (Dinstar user_id)
        gateway_ref   TEXT,                      -- the transport's reference (Dinstar user_id, modem TP-MR)
        error         TEXT,                      -- last failure, in the gateway's words
        not_before    INTEGER NOT NULL DEFAULT 0,-- retry backoff, unix ms
        created_at    INTEGER NOT NULL,          -- unix ms
        updated_at    INTEGER NOT NULL,
        sent_at       INTEGER,
        final_at      INTEGER
    );
    CREATE UNIQUE INDEX message_client_id ON message(client_id) WHERE client_id IS NOT NULL;
    -- The dialer loader's query: state 1 of one dialer, by priority then load order.
    CREATE INDEX message_queue ON message(dialer, state, priority, id);
    CREATE INDEX message_number ON message(number);
    CREATE INDEX message_gateway_ref ON message(gateway, gateway_ref) WHERE gateway_ref IS NOT NULL;
    CREATE INDEX message_reference ON message(gateway, reference) WHERE reference IS NOT NULL;

    CREATE TABLE attempt (
        id          INTEGER PRIMARY KEY,
        message_id  INTEGER NOT NULL REFERENCES message(id),
        channel     TEXT    NOT NULL,
        reference   INTEGER,
        gateway_ref TEXT,
        started_at  INTEGER NOT NULL,
        finished_at INTEGER,
        outcome     TEXT,                        -- sent | temporary | permanent | port_unusable | unknown
        detail      TEXT
    );
    CREATE INDEX attempt_message ON attempt(message_id);

    CREATE TABLE import (
        id          INTEGER PRIMARY KEY,
        kind        TEXT    NOT NULL,            -- messages | dncr
        filename    TEXT    NOT NULL,
        lines       INTEGER NOT NULL,
        accepted    INTEGER NOT NULL,
        created_at  INTEGER NOT NULL
    );

    CREATE TABLE dncr (
        key         TEXT    NOT NULL,            -- E.164, or the bare digits when not normalisable
        dialer      TEXT    NOT NULL DEFAULT '', -- '' means every dialer
        written     TEXT    NOT NULL,            -- as uploaded
        source      TEXT    NOT NULL,            -- file name, "api", "opt-out"
        added_at    INTEGER NOT NULL,
        PRIMARY KEY (key, dialer)
    ) WITHOUT ROWID;

    -- What an operator decided at run time and must survive a restart.
    CREATE TABLE dialer_state (
        name        TEXT PRIMARY KEY,
        stopped     INTEGER NOT NULL DEFAULT 0,
        changed_at  INTEGER NOT NULL
    ) WITHOUT ROWID;

    -- Small persistent values: counters and high-water marks.
    CREATE TABLE kv (
        key   TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    ) WITHOUT ROWID;
    "#,
    // 2: received messages, deduplicated on the gateway's own id.
    r#"
    CREATE TABLE inbound (
        id          INTEGER PRIMARY KEY,
        gateway     TEXT    NOT NULL,
        port        INTEGER,
        source_key  TEXT    NOT NULL,            -- the gateway's id of the message, e.g. "<serial>:<incoming_sms_id>"
        sender      TEXT    NOT NULL,            -- as received
        number      TEXT,                        -- E.164 when the sender is a phone number
        recipient   TEXT,                        -- our number (DID) when the gateway says it
        text        TEXT    NOT NULL,
        sent_at     TEXT,                        -- the network's timestamp, as given
        received_at INTEGER NOT NULL,            -- unix ms, our clock
        campaign    TEXT,                        -- routing result (a later step)
        UNIQUE (gateway, source_key)
    );
    CREATE INDEX inbound_number ON inbound(number, received_at);
    CREATE INDEX inbound_received ON inbound(received_at);
    "#,
    // 3: indexes shaped for the dialer's hot path and for bulk imports.
    // - The number index is dropped: no query can use it (a number search
    //   also matches the destination as written, so it scans anyway), and
    //   keeping phone numbers in order made every bulk import insert into
    //   it at random places.
    // - Messages waiting for a retry get their own small index: the loader
    //   asks when the next one falls due each time it runs dry, which
    //   otherwise walked every queued message of the dialer.
    r#"
    DROP INDEX message_number;
    CREATE INDEX message_retry ON message(dialer, not_before) WHERE state = 1 AND not_before > 0;
    "#,
    // 4: messages per dialer and state, kept by triggers in the same
    // transaction as every change, so the status, the dashboards and
    // /metrics read a few rows instead of counting a million; it cannot
    // drift, whichever code path moves a message. New rows are counted by
    // `spool::insert` and `insert_many`, the only two ways in, once per
    // batch: a trigger per inserted row made a million-line import twice
    // as slow.
    r#"
    CREATE TABLE message_count (
        dialer  TEXT    NOT NULL,
        state   INTEGER NOT NULL,
        n       INTEGER NOT NULL,
        PRIMARY KEY (dialer, state)
    ) WITHOUT ROWID;
    INSERT INTO message_count (dialer, state, n)
        SELECT dialer, state, count(*) FROM message WHERE true GROUP BY dialer, state;
    CREATE TRIGGER message_count_update AFTER UPDATE OF state, dialer ON message
        WHEN OLD.state IS NOT NEW.state OR OLD.dialer IS NOT NEW.dialer
    BEGIN
        UPDATE message_count SET n = n - 1 WHERE dialer = OLD.dialer AND state = OLD.state;
        INSERT INTO message_count (dialer, state, n) VALUES (NEW.dialer, NEW.state, 1)
            ON CONFLICT (dialer, state) DO UPDATE SET n = n + 1;
    END;
    CREATE TRIGGER message_count_delete AFTER DELETE ON message BEGIN
        UPDATE message_count SET n = n - 1 WHERE dialer = OLD.dialer AND state = OLD.state;
    END;
    "#,
    // 5: received messages listed by their sender as written (alphanumeric
    // senders have no number).
    r#"
    CREATE INDEX inbound_sender ON inbound(sender, received_at);
    "#,
    // 6: every state change of a message, kept in its history by the same
    // trigger that keeps the counts (one trigger per change, not two); the
    // last delivery report's words kept beside the last failure's.
    r#"
    ALTER TABLE message ADD COLUMN report TEXT;
    CREATE TABLE message_history (
        id          INTEGER PRIMARY KEY,
        message_id  INTEGER NOT NULL,
        at          INTEGER NOT NULL,            -- unix ms
        from_state  INTEGER NOT NULL,
        state       INTEGER NOT NULL,
        channel     TEXT,                        -- "gateway:port" of the attempt, when there is one
        detail      TEXT                         -- the report or failure that moved it, in the gateway's words
    );
    CREATE INDEX message_history_message ON message_history(message_id, id);
    DROP TRIGGER message_count_update;
    CREATE TRIGGER message_state_changed AFTER UPDATE OF state, dialer ON message
        WHEN OLD.state IS NOT NEW.state OR OLD.dialer IS NOT NEW.dialer
    BEGIN
        UPDATE message_count SET n = n - 1 WHERE dialer = OLD.dialer AND state = OLD.state;
        INSERT INTO message_count (dialer, state, n) VALUES (NEW.dialer, NEW.state, 1)
            ON CONFLICT (dialer, state) DO UPDATE SET n = n + 1;
        INSERT INTO message_history (message_id, at, from_state, state, channel, detail)
            SELECT NEW.id, CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER),
                   OLD.state, NEW.state, NEW.channel,
                   CASE WHEN NEW.report IS NOT OLD.report THEN NEW.report
                        WHEN NEW.error IS NOT OLD.error THEN NEW.error END
            WHERE OLD.state IS NOT NEW.state;
    END;
    DROP TRIGGER message_count_delete;
    CREATE TRIGGER message_count_delete AFTER DELETE ON message BEGIN
        UPDATE message_count SET n = n - 1 WHERE dialer = OLD.dialer AND state = OLD.state;
        DELETE FROM message_history WHERE message_id = OLD.id;
    END;
    "#,
    // 7: the inbound engine. Conversations (an interaction: one customer
    // and one campaign, open until closed or idle) and their messages in
    // both directions; the portal's event log, written by the same
    // transaction (or trigger) as the change each event reports; the
    // consent ledger; webhook deliveries given up on. A reply the system
    // sends is pinned to the channel its conversation came in on.
    r#"
    CREATE TABLE interaction (
        id          INTEGER PRIMARY KEY,
        campaign    TEXT    NOT NULL,
        customer    TEXT    NOT NULL,            -- E.164, or the sender as written
        gateway     TEXT    NOT NULL,            -- where the customer wrote first
        port        INTEGER,
        recipient   TEXT,                        -- our number they wrote to
        agent       TEXT,
        origin      TEXT    NOT NULL,            -- inbound | outbound: who wrote first
        started_at  INTEGER NOT NULL,            -- unix ms
        last_at     INTEGER NOT NULL,
        closed_at   INTEGER,
        closed_by   TEXT,                        -- idle | api:<token> | agent:<id>
        messages    INTEGER NOT NULL DEFAULT 0,
        ooh_at      INTEGER                      -- last out-of-hours reply, unix ms
    );
    CREATE UNIQUE INDEX interaction_open ON interaction(campaign, customer) WHERE closed_at IS NULL;
    CREATE INDEX interaction_started ON interaction(started_at);
    CREATE INDEX interaction_customer ON interaction(customer, started_at);
    CREATE INDEX interaction_idle ON interaction(last_at) WHERE closed_at IS NULL;
    CREATE INDEX interaction_agent ON interaction(agent, started_at);

    CREATE TABLE interaction_message (
        id              INTEGER PRIMARY KEY,
        interaction_id  INTEGER NOT NULL,
        at              INTEGER NOT NULL,        -- unix ms
        direction       TEXT    NOT NULL,        -- in | out
        sender          TEXT    NOT NULL,        -- customer | system | agent:<id>
        channel         TEXT,                    -- "gateway:port", or the gateway
        text            TEXT    NOT NULL,
        inbound_id      INTEGER,
        message_id      INTEGER                  -- the spool message of an outbound one
    );
    CREATE INDEX interaction_message_of ON interaction_message(interaction_id, id);

    ALTER TABLE inbound ADD COLUMN interaction_id INTEGER;
    -- Who imported a DNCR list, and the national registry it is, so a
    -- number's consent history can name them; each entry its import.
    ALTER TABLE import ADD COLUMN who TEXT;
    ALTER TABLE import ADD COLUMN registry TEXT;
    ALTER TABLE dncr ADD COLUMN import_id INTEGER;
    ALTER TABLE message ADD COLUMN pin_channel TEXT;
    ALTER TABLE message ADD COLUMN interaction_id INTEGER;

    -- seq is the rowid: max + 1 for each new event. It is never reused
    -- because the purge never deletes the newest event (AUTOINCREMENT
    -- would say the same with a second table written per event, on the
    -- outbound hot path). Events are appended in time order, so the purge
    -- reads the oldest by seq and needs no index on `at`.
    CREATE TABLE event (
        seq             INTEGER PRIMARY KEY,
        at              INTEGER NOT NULL,        -- unix ms
        kind            TEXT    NOT NULL,
        campaign        TEXT,
        interaction_id  INTEGER,
        data            TEXT    NOT NULL         -- JSON object
    );

    CREATE TABLE consent (
        id          INTEGER PRIMARY KEY,
        number      TEXT    NOT NULL,            -- the DNCR key
        at          INTEGER NOT NULL,            -- unix ms
        action      TEXT    NOT NULL,            -- opt_out | opt_in
        dialer      TEXT    NOT NULL DEFAULT '', -- '' every dialer
        source      TEXT    NOT NULL,            -- keyword | import | registry | api
        who         TEXT,                        -- the customer, a token name, a file name
        detail      TEXT                         -- the text received, the registry, the file
    );
    CREATE INDEX consent_number ON consent(number, id);

    CREATE TABLE webhook_dead (
        id          INTEGER PRIMARY KEY,
        webhook     TEXT    NOT NULL,
        seq         INTEGER NOT NULL,
        kind        TEXT    NOT NULL,
        body        TEXT    NOT NULL,            -- as it was sent: outlives the event's retention
        attempts    INTEGER NOT NULL,
        first_at    INTEGER NOT NULL,
        dead_at     INTEGER NOT NULL,
        last_error  TEXT,
        replayed_at INTEGER
    );
    CREATE INDEX webhook_dead_of ON webhook_dead(webhook, id);

    DROP TRIGGER message_state_changed;
    CREATE TRIGGER message_state_changed AFTER UPDATE OF state, dialer ON message
        WHEN OLD.state IS NOT NEW.state OR OLD.dialer IS NOT NEW.dialer
    BEGIN
        UPDATE message_count SET n = n - 1 WHERE dialer = OLD.dialer AND state = OLD.state;
        INSERT INTO message_count (dialer, state, n) VALUES (NEW.dialer, NEW.state, 1)
            ON CONFLICT (dialer, state) DO UPDATE SET n = n + 1;
        INSERT INTO message_history (message_id, at, from_state, state, channel, detail)
            SELECT NEW.id, CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER),
                   OLD.state, NEW.state, NEW.channel,
                   CASE WHEN NEW.report IS NOT OLD.report THEN NEW.report
                        WHEN NEW.error IS NOT OLD.error THEN NEW.error END
            WHERE OLD.state IS NOT NEW.state;
        INSERT INTO event (at, kind, campaign, interaction_id, data)
            SELECT CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER),
                   'message.state',
                   (SELECT campaign FROM interaction WHERE id = NEW.interaction_id),
                   NEW.interaction_id,
                   json_object('message', NEW.id, 'dialer', NEW.dialer,
                       'client_id', NEW.client_id, 'destination', NEW.destination,
                       'state', CASE NEW.state WHEN 0 THEN 'NONE' WHEN 1 THEN 'TO_PROCESS'
                           WHEN 2 THEN 'SENDING' WHEN 3 THEN 'BLOCKED' WHEN 4 THEN 'SENT'
                           WHEN 5 THEN 'DELIVERED' WHEN 6 THEN 'FAILED' WHEN 7 THEN 'INVALID'
                           WHEN 8 THEN 'CANCELLED' WHEN 9 THEN 'UNKNOWN' WHEN 10 THEN 'UNDELIVERED' END,
                       'state_code', NEW.state, 'from_state_code', OLD.state,
                       'channel', NEW.channel, 'interaction', NEW.interaction_id,
                       'detail', CASE WHEN NEW.report IS NOT OLD.report THEN NEW.report
                                      WHEN NEW.error IS NOT OLD.error THEN NEW.error END)
            WHERE OLD.state IS NOT NEW.state;
    END;
    "#,
    // 8 (notify: the webhook outbox; renumber freely at a merge, nothing
    // refers to the number): each webhook's durable position in the
    // event log. Every event up to `delivered` was delivered,
    // dead-lettered or not wanted by it; the purge of old events never
    // passes the lowest position (`store::events::purge`).
    r#"
    CREATE TABLE webhook_outbox (
        webhook     TEXT    PRIMARY KEY,
        delivered   INTEGER NOT NULL,
        updated_at  INTEGER NOT NULL             -- unix ms
    );
    CREATE INDEX webhook_dead_open ON webhook_dead(webhook, id) WHERE replayed_at IS NULL;
    "#,
    // 9: WhatsApp. A message may be a provider's template (Twilio's
    // ContentSid, a Meta template name and language) with its variables,
    // as JSON; templates sent per gateway in the last 24 h are what its
    // messaging limit counts, read at start.
    r#"
    ALTER TABLE message ADD COLUMN template TEXT;
    CREATE INDEX message_template_sent ON message(gateway, sent_at) WHERE template IS NOT NULL;
    CREATE INDEX inbound_gateway_received ON inbound(gateway, received_at);
    "#,
    // 10: the ACD. Agents the portal names, their campaigns (members),
    // what was done to them and by whom; an interaction's place in its
    // campaign's queue, when an agent got it and first answered, and the
    // customer's last message (for the abandon time), so the queue, the
    // assignments and the figures are all read back after a restart.
    r#"
    CREATE TABLE agent (
        id          TEXT    PRIMARY KEY,
        name        TEXT    NOT NULL,
        max_total   INTEGER,                     -- active interactions over all campaigns; NULL: no cap
        state       TEXT    NOT NULL,            -- logged_out | ready | break
        break_name  TEXT,
        paused      INTEGER NOT NULL DEFAULT 0,  -- by a supervisor: no new interactions
        since       INTEGER NOT NULL,            -- last change of state, unix ms
        idle_since  INTEGER NOT NULL,            -- last got, ended or became ready for work
        created_at  INTEGER NOT NULL
    ) WITHOUT ROWID;

    CREATE TABLE member (
        campaign    TEXT    NOT NULL,
        agent       TEXT    NOT NULL,
        added_at    INTEGER NOT NULL,
        PRIMARY KEY (campaign, agent)
    ) WITHOUT ROWID;
    CREATE INDEX member_agent ON member(agent, campaign);

    CREATE TABLE agent_action (
        id          INTEGER PRIMARY KEY,
        agent       TEXT    NOT NULL,
        at          INTEGER NOT NULL,            -- unix ms
        action      TEXT    NOT NULL,            -- login | logout | break | ready | pause | resume | chat | transfer | ...
        who         TEXT    NOT NULL,            -- api:<token name>
        detail      TEXT
    );
    CREATE INDEX agent_action_of ON agent_action(agent, id);

    -- round_robin's memory: the agent served last, per campaign.
    CREATE TABLE acd_memory (
        campaign    TEXT    PRIMARY KEY,
        last_agent  TEXT    NOT NULL
    ) WITHOUT ROWID;

    ALTER TABLE interaction ADD COLUMN waiting INTEGER;        -- 1 while in its campaign's queue
    ALTER TABLE interaction ADD COLUMN assigned_at INTEGER;    -- first given to an agent
    ALTER TABLE interaction ADD COLUMN first_reply_at INTEGER; -- an agent's first reply
    ALTER TABLE interaction ADD COLUMN last_in_at INTEGER;     -- the customer's last message
    ALTER TABLE interaction ADD COLUMN refused TEXT;           -- busy: acd_max_waiting were waiting
    CREATE INDEX interaction_waiting ON interaction(campaign, id) WHERE waiting = 1;
    CREATE INDEX interaction_active ON interaction(agent, campaign) WHERE closed_at IS NULL AND agent IS NOT NULL;
    CREATE INDEX interaction_campaign_started ON interaction(campaign, started_at);
    CREATE INDEX interaction_closed ON interaction(campaign, closed_at) WHERE closed_at IS NOT NULL;
    "#,
];
