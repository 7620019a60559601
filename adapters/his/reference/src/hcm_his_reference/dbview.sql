-- The reference HIS's database face (PostgreSQL): the tables a HIS keeps, the views and
-- stored procedures it offers integrators. Same rules as the SQLite store: every write
-- is keyed by the caller's idempotency key; a refusal raises 'code: text' (SQLSTATE
-- P0001) and leaves nothing behind. Installed into one schema (search_path).

CREATE TABLE patient (
    patient_id text PRIMARY KEY,
    resident_id text NOT NULL UNIQUE,
    id_number text,
    name text NOT NULL,
    sex text NOT NULL,
    birth_date date,
    created_at timestamp NOT NULL DEFAULT localtimestamp
);
CREATE SEQUENCE patient_no;
CREATE TABLE visit (
    visit_id text PRIMARY KEY,
    request_id text NOT NULL UNIQUE,
    patient_id text NOT NULL REFERENCES patient,
    kind text NOT NULL,
    department text NOT NULL,
    doctor text,
    slot_start timestamp NOT NULL,
    slot_end timestamp NOT NULL,
    queue_number int NOT NULL,
    fee numeric(12, 2)
);
CREATE TABLE admission (
    admission_id text PRIMARY KEY,
    request_id text NOT NULL UNIQUE,
    patient_id text NOT NULL REFERENCES patient,
    department text NOT NULL,
    ward text NOT NULL,
    bed text NOT NULL,
    admitted_at timestamp NOT NULL,
    discharged_at timestamp
);
CREATE SEQUENCE admission_no;
CREATE TABLE orders (
    order_id text PRIMARY KEY,
    patient_id text NOT NULL,
    visit_id text NOT NULL,
    kind text NOT NULL,
    code text NOT NULL,
    name text NOT NULL,
    dose text,
    concentration text,
    route text,
    frequency text,
    scheduled_at timestamp,
    status text NOT NULL DEFAULT 'ordered',
    ordered_by text,
    -- the ward's order type and the window to carry the order out (the bedside rules)
    order_type text,
    window_start timestamp,
    window_end timestamp
);
CREATE TABLE charge (
    charge_id text PRIMARY KEY,
    patient_id text NOT NULL,
    visit_id text NOT NULL,
    item_code text NOT NULL,
    item_name text NOT NULL,
    quantity numeric(12, 3) NOT NULL,
    unit_price numeric(12, 2) NOT NULL,
    amount numeric(12, 2) NOT NULL,
    category text,
    paid_by text
);
CREATE TABLE report (
    report_id text PRIMARY KEY,
    patient_id text NOT NULL,
    visit_id text NOT NULL,
    kind text NOT NULL,
    title text NOT NULL,
    issued_at timestamp,
    status text NOT NULL DEFAULT 'pending',
    summary text
);
CREATE TABLE deposit (
    transaction_id text PRIMARY KEY,
    deposit_id text NOT NULL,
    admission_id text NOT NULL REFERENCES admission,
    amount numeric(12, 2) NOT NULL CHECK (amount > 0),
    paid_at timestamp NOT NULL
);
CREATE TABLE execution (
    order_id text NOT NULL REFERENCES orders,
    executed_at timestamp NOT NULL,
    executed_by text NOT NULL,
    PRIMARY KEY (order_id, executed_at)
);

-- fault switch (tests): set one row to make the HIS refuse, stall, drop or break --------

CREATE TABLE fault (
    mode text NOT NULL CHECK (mode IN ('refuse', 'slow', 'down', 'garbage')),
    seconds float NOT NULL DEFAULT 0
);

CREATE FUNCTION fault_gate() RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    f record;
BEGIN
    SELECT * INTO f FROM fault LIMIT 1;
    IF NOT FOUND THEN
        RETURN true;
    ELSIF f.mode = 'refuse' THEN
        RAISE EXCEPTION 'refused: refused by fault switch' USING ERRCODE = 'P0001';
    ELSIF f.mode = 'slow' THEN
        PERFORM pg_sleep(f.seconds);
    ELSIF f.mode = 'down' THEN
        PERFORM pg_terminate_backend(pg_backend_pid());
    ELSE
        RAISE EXCEPTION 'fault switch: corrupted page' USING ERRCODE = 'XX001';
    END IF;
    RETURN true;
END $$;

-- views for integrators ---------------------------------------------------------------

-- The patient lookup passes the fault switch once per query (a PL/pgSQL function is
-- not inlined); in a view's WHERE it would run per row, and not at all for no rows.
CREATE FUNCTION patient_rows() RETURNS TABLE (patient_id text, resident_id text)
        LANGUAGE plpgsql AS $$
BEGIN
    PERFORM fault_gate();
    RETURN QUERY SELECT p.patient_id, p.resident_id FROM patient p;
END $$;

CREATE VIEW v_patient AS
    SELECT patient_id, resident_id FROM patient_rows();

CREATE VIEW v_registration AS
    SELECT v.visit_id AS registration_id, v.request_id, v.patient_id, v.kind,
           v.department AS department_code, v.doctor AS doctor_code, v.slot_start, v.slot_end,
           v.queue_number, v.fee,
           (SELECT count(*) FROM visit o WHERE o.department = v.department
              AND o.slot_start::date = v.slot_start::date
              AND o.queue_number < v.queue_number)::int AS ahead
      FROM visit v;

CREATE VIEW v_order AS
    SELECT order_id, patient_id, visit_id, kind, code, name, dose, concentration, route,
           frequency, scheduled_at, status, ordered_by, order_type, window_start, window_end
      FROM orders;

CREATE VIEW v_charge AS
    SELECT charge_id, patient_id, visit_id, item_code, item_name, quantity, unit_price,
           amount, category AS insurance_category, paid_by IS NOT NULL AS paid
      FROM charge;

CREATE VIEW v_report AS
    SELECT report_id, patient_id, visit_id, kind, title, issued_at, status, summary
      FROM report;

CREATE VIEW v_admission AS
    SELECT a.admission_id, a.request_id, a.patient_id, a.ward, a.bed, a.admitted_at,
           a.discharged_at,
           coalesce((SELECT sum(d.amount) FROM deposit d
                      WHERE d.admission_id = a.admission_id), 0)::numeric(12, 2)
               AS deposit_balance
      FROM admission a;

-- stored procedures -------------------------------------------------------------------

CREATE FUNCTION refuse(code text, text text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '%: %', code, text USING ERRCODE = 'P0001';
END $$;

CREATE FUNCTION add_charge(p text, v text, code text, name text, price numeric,
                           qty numeric, cat text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    n int := (SELECT count(*) FROM charge WHERE visit_id = v) + 1;
BEGIN
    INSERT INTO charge VALUES (v || '-C' || n, p, v, code, name, qty, price,
                               round(price * qty, 2), cat, NULL);
    RETURN v || '-C' || n;
END $$;

-- a doctor's order with its charge; its order ID. order_type is the ward's type (it
-- chooses the bedside rule), window_start/window_end when it may be carried out
CREATE FUNCTION add_order(p text, v text, kind text, code text, name text, price numeric,
                          at timestamp, dose text DEFAULT NULL, conc text DEFAULT NULL,
                          route text DEFAULT NULL, freq text DEFAULT NULL,
                          order_type text DEFAULT NULL, window_start timestamp DEFAULT NULL,
                          window_end timestamp DEFAULT NULL, ordered_by text DEFAULT NULL)
        RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    n int := (SELECT count(*) FROM orders WHERE visit_id = v) + 1;
BEGIN
    IF order_type IS NOT NULL AND order_type NOT IN
            ('skin_test', 'specimen', 'infusion', 'injection', 'oral', 'other') THEN
        PERFORM refuse('invalid-order', 'no order type ' || order_type);
    END IF;
    IF at IS NULL AND (window_start IS NULL OR window_end IS NULL) THEN
        PERFORM refuse('invalid-order', 'an order needs a scheduled time or a window');
    END IF;
    IF window_end <= window_start THEN
        PERFORM refuse('invalid-order', 'an order''s window ends after it starts');
    END IF;
    INSERT INTO orders VALUES (v || '-O' || n, p, v, kind, code, name, dose, conc, route,
                               freq, at, 'ordered', ordered_by, order_type, window_start,
                               window_end);
    PERFORM add_charge(p, v, code, name, price, 1, 'A');
    RETURN v || '-O' || n;
END $$;

CREATE FUNCTION register_patient(p_resident text, p_name text, p_sex text,
                                 p_birth date, p_id_number text, p_hospital text)
        RETURNS TABLE (patient_id text, created boolean) LANGUAGE plpgsql AS $$
DECLARE
    pid text;
BEGIN
    PERFORM fault_gate();
    IF coalesce(p_resident, '') = '' OR coalesce(p_name, '') = '' THEN
        PERFORM refuse('required-field-missing', 'a patient needs a resident ID and a name');
    END IF;
    SELECT p.patient_id INTO pid FROM patient p WHERE p.resident_id = p_resident;
    IF FOUND THEN
        RETURN QUERY SELECT pid, false;
        RETURN;
    END IF;
    pid := p_hospital || lpad(nextval('patient_no')::text, 8, '0');
    INSERT INTO patient (patient_id, resident_id, id_number, name, sex, birth_date)
         VALUES (pid, p_resident, p_id_number, p_name, p_sex, p_birth)
    ON CONFLICT (resident_id) DO NOTHING;
    IF NOT FOUND THEN  -- a concurrent call won: answer its patient
        RETURN QUERY SELECT p.patient_id, false FROM patient p WHERE p.resident_id = p_resident;
        RETURN;
    END IF;
    RETURN QUERY SELECT pid, true;
END $$;

CREATE FUNCTION register_visit(p_patient text, p_request text, p_kind text, p_dept text,
                               p_doctor text, p_start timestamp, p_end timestamp,
                               p_fee numeric)
        RETURNS SETOF v_registration LANGUAGE plpgsql AS $$
DECLARE
    n int;
    vid text;
BEGIN
    PERFORM fault_gate();
    IF NOT EXISTS (SELECT 1 FROM visit WHERE request_id = p_request) THEN
        IF NOT EXISTS (SELECT 1 FROM patient WHERE patient_id = p_patient) THEN
            PERFORM refuse('unknown-patient', 'no patient ' || p_patient);
        END IF;
        IF p_end <= p_start OR p_end - p_start > interval '1 hour' THEN
            PERFORM refuse('invalid-slot', 'a slot ends after it starts and lasts at most an hour');
        END IF;
        PERFORM pg_advisory_xact_lock(hashtext('visit'));
        n := (SELECT count(*) FROM visit WHERE department = p_dept
                 AND slot_start::date = p_start::date) + 1;
        vid := 'V' || to_char(p_start, 'YYYYMMDD') || p_dept || lpad(n::text, 4, '0');
        INSERT INTO visit VALUES (vid, p_request, p_patient, p_kind, p_dept, p_doctor,
                                  p_start, p_end, n, p_fee);
        IF p_fee IS NOT NULL THEN
            PERFORM add_charge(p_patient, vid, 'REG', '挂号费 Registration', p_fee, 1, NULL);
        END IF;
        PERFORM add_order(p_patient, vid, 'lab', 'CBC', '血常规 Complete blood count', 25.00, p_start);
        PERFORM add_order(p_patient, vid, 'drug', 'AMX500', '阿莫西林胶囊 Amoxicillin', 18.60,
                          p_start, '0.5 g', NULL, 'PO', 'TID');
        INSERT INTO report VALUES (vid || '-R1', p_patient, vid, 'lab',
                                   '血常规 Complete blood count', NULL, 'pending', NULL);
    END IF;
    RETURN QUERY SELECT * FROM v_registration WHERE request_id = p_request;
END $$;

CREATE FUNCTION pay_charges(p_patient text, p_charges text[], p_transaction text)
        RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    c text;
    r record;
BEGIN
    PERFORM fault_gate();
    IF coalesce(array_length(p_charges, 1), 0) = 0 OR coalesce(p_transaction, '') = '' THEN
        PERFORM refuse('required-field-missing', 'name the charges and the transaction');
    END IF;
    FOREACH c IN ARRAY p_charges LOOP
        SELECT patient_id, paid_by INTO r FROM charge WHERE charge_id = c FOR UPDATE;
        IF NOT FOUND OR r.patient_id <> p_patient THEN
            PERFORM refuse('unknown-charge', 'no charge ' || c || ' for this patient');
        END IF;
        IF r.paid_by IS NOT NULL AND r.paid_by <> p_transaction THEN
            PERFORM refuse('already-paid', 'charge ' || c || ' was paid by another transaction');
        END IF;
    END LOOP;
    UPDATE charge SET paid_by = p_transaction WHERE charge_id = ANY (p_charges);
    RETURN true;
END $$;

CREATE FUNCTION admit(p_patient text, p_request text, p_dept text, p_ward text, p_bed text,
                      p_at timestamp)
        RETURNS SETOF v_admission LANGUAGE plpgsql AS $$
DECLARE
    aid text;
BEGIN
    PERFORM fault_gate();
    IF NOT EXISTS (SELECT 1 FROM admission WHERE request_id = p_request) THEN
        IF NOT EXISTS (SELECT 1 FROM patient WHERE patient_id = p_patient) THEN
            PERFORM refuse('unknown-patient', 'no patient ' || p_patient);
        END IF;
        IF EXISTS (SELECT 1 FROM admission WHERE ward = p_ward AND bed = p_bed
                      AND discharged_at IS NULL) THEN
            PERFORM refuse('bed-occupied', 'bed ' || p_ward || '/' || p_bed || ' is occupied');
        END IF;
        aid := 'A' || lpad(nextval('admission_no')::text, 8, '0');
        INSERT INTO admission VALUES (aid, p_request, p_patient, p_dept, p_ward, p_bed, p_at, NULL);
        PERFORM add_charge(p_patient, aid, 'BED', '床位费 Bed, one day', 60.00, 1, NULL);
        PERFORM add_order(p_patient, aid, 'nursing', 'N2', '二级护理 Level II nursing', 30.00, p_at);
        PERFORM add_order(p_patient, aid, 'drug', 'NS250', '0.9%氯化钠注射液 Sodium chloride',
                          5.50, p_at, '250 ml', '0.9%', 'IVGTT', 'QD', 'infusion');
    END IF;
    RETURN QUERY SELECT * FROM v_admission WHERE request_id = p_request;
END $$;

CREATE FUNCTION record_deposit(p_admission text, p_deposit text, p_amount numeric,
                               p_paid_at timestamp, p_transaction text)
        RETURNS SETOF v_admission LANGUAGE plpgsql AS $$
DECLARE
    stay record;
    known text;
BEGIN
    PERFORM fault_gate();
    SELECT * INTO stay FROM admission WHERE admission_id = p_admission FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM refuse('unknown-admission', 'no stay ' || p_admission);
    END IF;
    SELECT admission_id INTO known FROM deposit WHERE transaction_id = p_transaction;
    IF NOT FOUND THEN
        IF stay.discharged_at IS NOT NULL THEN
            PERFORM refuse('discharged', 'stay ' || p_admission || ' is closed');
        END IF;
        IF p_amount <= 0 THEN
            PERFORM refuse('invalid-amount', 'a deposit is a positive amount');
        END IF;
        INSERT INTO deposit VALUES (p_transaction, p_deposit, p_admission, p_amount, p_paid_at);
    ELSIF known <> p_admission THEN
        PERFORM refuse('duplicate-transaction', 'transaction already used for another stay');
    END IF;
    RETURN QUERY SELECT * FROM v_admission WHERE admission_id = p_admission;
END $$;

CREATE FUNCTION discharge(p_admission text, p_at timestamp)
        RETURNS SETOF v_admission LANGUAGE plpgsql AS $$
DECLARE
    owed numeric;
BEGIN
    PERFORM fault_gate();
    IF NOT EXISTS (SELECT 1 FROM admission WHERE admission_id = p_admission) THEN
        PERFORM refuse('unknown-admission', 'no stay ' || p_admission);
    END IF;
    owed := (SELECT coalesce(sum(amount) FILTER (WHERE paid_by IS NULL), 0) FROM charge
              WHERE visit_id = p_admission)
            - (SELECT deposit_balance FROM v_admission WHERE admission_id = p_admission);
    IF owed > 0 THEN
        PERFORM refuse('bill-unsettled', 'stay ' || p_admission || ' still owes ' || owed);
    END IF;
    UPDATE admission SET discharged_at = p_at
     WHERE admission_id = p_admission AND discharged_at IS NULL;
    RETURN QUERY SELECT * FROM v_admission WHERE admission_id = p_admission;
END $$;

CREATE FUNCTION order_executed(p_order text, p_at timestamp, p_by text)
        RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    PERFORM fault_gate();
    IF NOT EXISTS (SELECT 1 FROM orders WHERE order_id = p_order) THEN
        PERFORM refuse('unknown-order', 'no order ' || p_order);
    END IF;
    INSERT INTO execution VALUES (p_order, p_at, p_by) ON CONFLICT DO NOTHING;
    UPDATE orders SET status = 'done' WHERE order_id = p_order;
    RETURN true;
END $$;
