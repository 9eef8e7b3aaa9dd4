-- dim_contacts: one row per contact (customer, supplier or both), at its latest version.
-- Archived contacts stay, with status ARCHIVED, because their documents still point at them.
-- A contact that invoices, credit notes or bank transactions point at but Xero did not return
-- gets an unknown member: a row with that contact_id, name 'Unknown contact', status UNKNOWN
-- and is_unknown TRUE, so its documents still join (their relationship tests warn).
--
-- sources: contacts
-- depends_on: fct_invoices, fct_credit_notes, fct_bank_transactions
--
-- columns:
--   contact_id        text       Xero ContactID (a UUID); unique.
--   contact_number    text       The organisation's own number for the contact, if any.
--   name              text       Display name (unique within the organisation); 'Unknown contact' for an unknown member.
--   first_name        text       First name of the contact person, if any.
--   last_name         text       Last name of the contact person, if any.
--   email             text       Email address.
--   is_customer       boolean    Whether the contact has sales invoices (Xero IsCustomer; for an unknown member, whether sales documents point at it).
--   is_supplier       boolean    Whether the contact has bills (Xero IsSupplier; for an unknown member, whether purchase documents point at it).
--   status            text       ACTIVE or ARCHIVED (Xero ContactStatus); UNKNOWN for an unknown member.
--   default_currency  text       The currency the contact trades in (ISO 4217), if set.
--   updated_at        timestamp  When Xero last changed the contact (UTC); empty for an unknown member.
--   is_unknown        boolean    Whether the row is an unknown member: a contact documents point at that Xero did not return.
--
-- tests:
--   unique: contact_id
--   not_null: contact_id, name, status, is_unknown
--   accepted_values: status in (ACTIVE, ARCHIVED, GDPRREQUEST, UNKNOWN)
WITH contacts AS (
    SELECT
        r.id AS contact_id,
        {{ m::text(row="r", path="ContactNumber") }} AS contact_number,
        {{ m::text(row="r", path="Name") }} AS name,
        {{ m::text(row="r", path="FirstName") }} AS first_name,
        {{ m::text(row="r", path="LastName") }} AS last_name,
        {{ m::text(row="r", path="EmailAddress") }} AS email,
        COALESCE({{ m::boolean(row="r", path="IsCustomer") }}, FALSE) AS is_customer,
        COALESCE({{ m::boolean(row="r", path="IsSupplier") }}, FALSE) AS is_supplier,
        {{ m::text(row="r", path="ContactStatus") }} AS status,
        {{ m::text(row="r", path="DefaultCurrency") }} AS default_currency,
        r.updated_at AS updated_at
    FROM {{ m::parsed(relation=source(name="contacts"), doc="record",
                      paths=["ContactNumber", "Name", "FirstName", "LastName", "EmailAddress",
                             "IsCustomer", "IsSupplier", "ContactStatus", "DefaultCurrency"]) }} AS r
),
referenced AS (
    -- Every contact a document points at, and whether as a customer or a supplier.
    SELECT contact_id,
           CASE WHEN type = 'ACCREC' THEN 1 ELSE 0 END AS as_customer,
           CASE WHEN type = 'ACCPAY' THEN 1 ELSE 0 END AS as_supplier
    FROM {{ ref(name="fct_invoices") }}
    UNION ALL
    SELECT contact_id,
           CASE WHEN type = 'ACCRECCREDIT' THEN 1 ELSE 0 END,
           CASE WHEN type = 'ACCPAYCREDIT' THEN 1 ELSE 0 END
    FROM {{ ref(name="fct_credit_notes") }}
    UNION ALL
    SELECT contact_id, 0, 0
    FROM {{ ref(name="fct_bank_transactions") }}
),
missing AS (
    SELECT f.contact_id, MAX(f.as_customer) AS as_customer, MAX(f.as_supplier) AS as_supplier
    FROM referenced AS f
    LEFT JOIN contacts AS c ON c.contact_id = f.contact_id
    WHERE f.contact_id IS NOT NULL
      AND c.contact_id IS NULL
    GROUP BY f.contact_id
)
SELECT
    contact_id,
    contact_number,
    name,
    first_name,
    last_name,
    email,
    is_customer,
    is_supplier,
    status,
    default_currency,
    updated_at,
    FALSE AS is_unknown
FROM contacts
UNION ALL
SELECT
    contact_id,
    {{ m::typed_null(type="text") }} AS contact_number,
    'Unknown contact' AS name,
    {{ m::typed_null(type="text") }} AS first_name,
    {{ m::typed_null(type="text") }} AS last_name,
    {{ m::typed_null(type="text") }} AS email,
    as_customer = 1 AS is_customer,
    as_supplier = 1 AS is_supplier,
    'UNKNOWN' AS status,
    {{ m::typed_null(type="text") }} AS default_currency,
    {{ m::typed_null(type="timestamp") }} AS updated_at,
    TRUE AS is_unknown
FROM missing
