-- dim_items: products and services the organisation sells or buys, one row per item.
-- An item code that invoice lines use but Xero did not return gets an unknown member: a row
-- with that code, item_id 'unknown:<code>', name 'Unknown item' and is_unknown TRUE, so its
-- lines still join (their relationship test warns).
--
-- sources: items
-- depends_on: fct_invoice_lines
--
-- columns:
--   item_id                text       Xero ItemID (a UUID); unique. 'unknown:<code>' for an unknown member.
--   code                   text       The item code invoice lines refer to; unique.
--   name                   text       Item name; 'Unknown item' for an unknown member.
--   description            text       Sales description.
--   is_sold                boolean    Whether the item is sold (for an unknown member, whether sales lines use it).
--   is_purchased           boolean    Whether the item is bought (for an unknown member, whether bill lines use it).
--   sales_unit_price       amount     Default sales price per unit, excluding tax.
--   sales_account_code     text       The revenue account sales of the item post to.
--   purchase_unit_price    amount     Default purchase price per unit, excluding tax.
--   purchase_account_code  text       The account purchases of the item post to.
--   updated_at             timestamp  When Xero last changed the item (UTC); empty for an unknown member.
--   is_unknown             boolean    Whether the row is an unknown member: an item code lines use that Xero did not return.
--
-- tests:
--   unique: item_id
--   unique: code
--   not_null: item_id, code, is_unknown
WITH items AS (
    SELECT
        r.id AS item_id,
        {{ m::text(row="r", path="Code") }} AS code,
        {{ m::text(row="r", path="Name") }} AS name,
        {{ m::text(row="r", path="Description") }} AS description,
        COALESCE({{ m::boolean(row="r", path="IsSold") }}, FALSE) AS is_sold,
        COALESCE({{ m::boolean(row="r", path="IsPurchased") }}, FALSE) AS is_purchased,
        {{ m::amount(row="r", path="SalesDetails.UnitPrice") }} AS sales_unit_price,
        {{ m::text(row="r", path="SalesDetails.AccountCode") }} AS sales_account_code,
        {{ m::amount(row="r", path="PurchaseDetails.UnitPrice") }} AS purchase_unit_price,
        {{ m::text(row="r", path="PurchaseDetails.AccountCode") }} AS purchase_account_code,
        r.updated_at AS updated_at
    FROM {{ m::parsed(relation=source(name="items"), doc="record",
                      paths=["Code", "Name", "Description", "IsSold", "IsPurchased",
                             "SalesDetails.UnitPrice", "SalesDetails.AccountCode",
                             "PurchaseDetails.UnitPrice", "PurchaseDetails.AccountCode"]) }} AS r
),
missing AS (
    SELECT l.item_code AS code,
           MAX(CASE WHEN l.type = 'ACCREC' THEN 1 ELSE 0 END) AS sold,
           MAX(CASE WHEN l.type = 'ACCPAY' THEN 1 ELSE 0 END) AS purchased
    FROM {{ ref(name="fct_invoice_lines") }} AS l
    LEFT JOIN items AS i ON i.code = l.item_code
    WHERE l.item_code IS NOT NULL
      AND i.code IS NULL
    GROUP BY l.item_code
)
SELECT
    item_id,
    code,
    name,
    description,
    is_sold,
    is_purchased,
    sales_unit_price,
    sales_account_code,
    purchase_unit_price,
    purchase_account_code,
    updated_at,
    FALSE AS is_unknown
FROM items
UNION ALL
SELECT
    'unknown:' || code AS item_id,
    code,
    'Unknown item' AS name,
    {{ m::typed_null(type="text") }} AS description,
    sold = 1 AS is_sold,
    purchased = 1 AS is_purchased,
    {{ m::typed_null(type="amount") }} AS sales_unit_price,
    {{ m::typed_null(type="text") }} AS sales_account_code,
    {{ m::typed_null(type="amount") }} AS purchase_unit_price,
    {{ m::typed_null(type="text") }} AS purchase_account_code,
    {{ m::typed_null(type="timestamp") }} AS updated_at,
    TRUE AS is_unknown
FROM missing
