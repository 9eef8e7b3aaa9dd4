-- dim_contacts: one row per contact (customer, supplier or both), at its latest version.
-- Archived contacts stay, with status ARCHIVED, because their documents still point at them.
--
-- sources: contacts
-- depends_on:
--
-- columns:
--   contact_id        text       Xero ContactID (a UUID); unique.
--   contact_number    text       The organisation's own number for the contact, if any.
--   name              text       Display name (unique within the organisation).
--   first_name        text       First name of the contact person, if any.
--   last_name         text       Last name of the contact person, if any.
--   email             text       Email address.
--   is_customer       boolean    Whether the contact has sales invoices (Xero IsCustomer).
--   is_supplier       boolean    Whether the contact has bills (Xero IsSupplier).
--   status            text       ACTIVE or ARCHIVED (Xero ContactStatus).
--   default_currency  text       The currency the contact trades in (ISO 4217), if set.
--   updated_at        timestamp  When Xero last changed the contact (UTC).
--
-- tests:
--   unique: contact_id
--   not_null: contact_id, name, status
--   accepted_values: status in (ACTIVE, ARCHIVED, GDPRREQUEST)
SELECT
    r.id AS contact_id,
    {{ m::text(doc="r.record", path="ContactNumber") }} AS contact_number,
    {{ m::text(doc="r.record", path="Name") }} AS name,
    {{ m::text(doc="r.record", path="FirstName") }} AS first_name,
    {{ m::text(doc="r.record", path="LastName") }} AS last_name,
    {{ m::text(doc="r.record", path="EmailAddress") }} AS email,
    COALESCE({{ m::boolean(doc="r.record", path="IsCustomer") }}, FALSE) AS is_customer,
    COALESCE({{ m::boolean(doc="r.record", path="IsSupplier") }}, FALSE) AS is_supplier,
    {{ m::text(doc="r.record", path="ContactStatus") }} AS status,
    {{ m::text(doc="r.record", path="DefaultCurrency") }} AS default_currency,
    r.updated_at AS updated_at
FROM {{ source(name="contacts") }} AS r
