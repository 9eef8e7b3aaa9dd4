-- dim_items: products and services the organisation sells or buys, one row per item.
--
-- sources: items
-- depends_on:
--
-- columns:
--   item_id                text       Xero ItemID (a UUID); unique.
--   code                   text       The item code invoice lines refer to; unique.
--   name                   text       Item name.
--   description            text       Sales description.
--   is_sold                boolean    Whether the item is sold.
--   is_purchased           boolean    Whether the item is bought.
--   sales_unit_price       amount     Default sales price per unit, excluding tax.
--   sales_account_code     text       The revenue account sales of the item post to.
--   purchase_unit_price    amount     Default purchase price per unit, excluding tax.
--   purchase_account_code  text       The account purchases of the item post to.
--   updated_at             timestamp  When Xero last changed the item (UTC).
--
-- tests:
--   unique: item_id
--   unique: code
--   not_null: item_id, code
SELECT
    r.id AS item_id,
    {{ m::text(doc="r.record", path="Code") }} AS code,
    {{ m::text(doc="r.record", path="Name") }} AS name,
    {{ m::text(doc="r.record", path="Description") }} AS description,
    COALESCE({{ m::boolean(doc="r.record", path="IsSold") }}, FALSE) AS is_sold,
    COALESCE({{ m::boolean(doc="r.record", path="IsPurchased") }}, FALSE) AS is_purchased,
    {{ m::amount(doc="r.record", path="SalesDetails.UnitPrice") }} AS sales_unit_price,
    {{ m::text(doc="r.record", path="SalesDetails.AccountCode") }} AS sales_account_code,
    {{ m::amount(doc="r.record", path="PurchaseDetails.UnitPrice") }} AS purchase_unit_price,
    {{ m::text(doc="r.record", path="PurchaseDetails.AccountCode") }} AS purchase_account_code,
    r.updated_at AS updated_at
FROM {{ source(name="items") }} AS r
