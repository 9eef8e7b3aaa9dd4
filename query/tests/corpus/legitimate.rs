//! Realistic analytics queries over the transformed tables, shared by the
//! red-team test and the guard's bench.

use query::guard::Dialect;

/// Which dialects an input is tried in.
#[derive(Clone, Copy)]
pub enum On {
    Duck,
    Bq,
    Both,
}

impl On {
    pub fn dialects(self) -> &'static [Dialect] {
        match self {
            On::Duck => &[Dialect::DuckDb],
            On::Bq => &[Dialect::BigQuery],
            On::Both => &[Dialect::DuckDb, Dialect::BigQuery],
        }
    }
}

use On::{Both, Bq, Duck};

/// Realistic analytics questions over the real tables: (dialect, SQL).
pub const LEGITIMATE: &[(On, &str)] = &[
    // Top 10 customers by revenue last quarter.
    (Duck, "SELECT c.name, SUM(i.total_base) AS revenue
            FROM fct_invoices i JOIN dim_contacts c ON c.contact_id = i.contact_id
            WHERE i.type = 'ACCREC' AND i.status IN ('AUTHORISED', 'PAID')
              AND i.invoice_date >= date_trunc('quarter', current_date) - INTERVAL 3 MONTH
              AND i.invoice_date < date_trunc('quarter', current_date)
            GROUP BY c.name ORDER BY revenue DESC LIMIT 10"),
    (Bq, "SELECT c.name, SUM(i.total_base) AS revenue
          FROM `ll-cell-eu1.transformed_acme.fct_invoices` AS i
          JOIN `ll-cell-eu1.transformed_acme.dim_contacts` AS c ON c.contact_id = i.contact_id
          WHERE i.type = 'ACCREC' AND i.status IN ('AUTHORISED', 'PAID')
            AND i.invoice_date >= DATE_SUB(DATE_TRUNC(CURRENT_DATE(), QUARTER), INTERVAL 1 QUARTER)
            AND i.invoice_date < DATE_TRUNC(CURRENT_DATE(), QUARTER)
          GROUP BY c.name ORDER BY revenue DESC LIMIT 10"),
    // Receivables by month.
    (Duck, "SELECT strftime(date_trunc('month', invoice_date), '%Y-%m') AS month, SUM(amount_due_base) AS receivable
            FROM transformed_acme.fct_invoices WHERE type = 'ACCREC' AND status = 'AUTHORISED'
            GROUP BY 1 ORDER BY 1"),
    (Bq, "SELECT FORMAT_DATE('%Y-%m', invoice_date) AS month, SUM(amount_due_base) AS receivable
          FROM transformed_acme.fct_invoices WHERE type = 'ACCREC' AND status = 'AUTHORISED'
          GROUP BY month ORDER BY month"),
    // Aged receivables buckets.
    (Both, "SELECT CASE WHEN due_date >= CURRENT_DATE THEN 'current'
                        WHEN due_date >= CURRENT_DATE - 30 THEN '1-30'
                        WHEN due_date >= CURRENT_DATE - 60 THEN '31-60'
                        ELSE '60+' END AS bucket,
                   COUNT(*) AS invoices, SUM(amount_due) AS due
            FROM fct_invoices WHERE type = 'ACCREC' AND amount_due > 0
            GROUP BY 1 ORDER BY 1"),
    // Monthly revenue with a running total and month-over-month change.
    (Duck, "WITH monthly AS (
              SELECT date_trunc('month', invoice_date) AS month, SUM(sub_total_base) AS revenue
              FROM fct_invoices WHERE type = 'ACCREC' GROUP BY 1)
            SELECT month, revenue,
                   SUM(revenue) OVER (ORDER BY month ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS running,
                   revenue - LAG(revenue) OVER (ORDER BY month) AS change
            FROM monthly ORDER BY month"),
    (Bq, "WITH monthly AS (
            SELECT DATE_TRUNC(invoice_date, MONTH) AS month, SUM(sub_total_base) AS revenue
            FROM fct_invoices WHERE type = 'ACCREC' GROUP BY month)
          SELECT month, revenue,
                 SUM(revenue) OVER (ORDER BY month ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS running,
                 revenue - LAG(revenue) OVER (ORDER BY month) AS change
          FROM monthly ORDER BY month"),
    // Days sales outstanding proxy: average days to pay.
    (Duck, "SELECT AVG(date_diff('day', i.invoice_date, p.payment_date)) AS avg_days_to_pay
            FROM fct_payments p JOIN fct_invoices i USING (invoice_id)
            WHERE i.type = 'ACCREC' AND p.status = 'AUTHORISED'"),
    (Bq, "SELECT AVG(DATE_DIFF(p.payment_date, i.invoice_date, DAY)) AS avg_days_to_pay
          FROM fct_payments AS p JOIN fct_invoices AS i USING (invoice_id)
          WHERE i.type = 'ACCREC' AND p.status = 'AUTHORISED'"),
    // Best-selling items by quantity this year.
    (Both, "SELECT l.item_code, it.name, SUM(l.quantity) AS qty, SUM(l.line_amount) AS amount
            FROM fct_invoice_lines l LEFT JOIN dim_items it ON it.code = l.item_code
            WHERE l.type = 'ACCREC' AND EXTRACT(YEAR FROM l.invoice_date) = EXTRACT(YEAR FROM CURRENT_DATE)
            GROUP BY l.item_code, it.name ORDER BY qty DESC LIMIT 20"),
    // Expenses by account class and month (journals).
    (Duck, "SELECT date_trunc('month', journal_date) AS month, account_name, SUM(net_amount) AS net
            FROM fct_journal_lines WHERE account_class = 'EXPENSE'
            GROUP BY ALL ORDER BY month, net DESC"),
    (Bq, "SELECT DATE_TRUNC(journal_date, MONTH) AS month, account_name, SUM(net_amount) AS net
          FROM fct_journal_lines WHERE account_class = 'EXPENSE'
          GROUP BY month, account_name ORDER BY month, net DESC"),
    // Profit and loss by fiscal quarter through dim_date and dim_accounts.
    (Both, "SELECT d.fiscal_year, d.fiscal_quarter,
                   SUM(CASE WHEN a.class = 'REVENUE' THEN -j.net_amount ELSE 0 END) AS revenue,
                   SUM(CASE WHEN a.class = 'EXPENSE' THEN j.net_amount ELSE 0 END) AS expenses
            FROM fct_journal_lines j
            JOIN dim_accounts a ON a.account_id = j.account_id
            JOIN dim_date d ON d.date_day = j.journal_date
            GROUP BY d.fiscal_year, d.fiscal_quarter ORDER BY 1, 2"),
    // Customers who have never paid (NOT EXISTS).
    (Both, "SELECT c.contact_id, c.name FROM dim_contacts c
            WHERE c.is_customer AND NOT EXISTS (
              SELECT 1 FROM fct_invoices i JOIN fct_payments p ON p.invoice_id = i.invoice_id
              WHERE i.contact_id = c.contact_id)"),
    // Invoices above the customer's average (correlated scalar subquery).
    (Both, "SELECT i.invoice_number, i.total FROM fct_invoices i
            WHERE i.total > (SELECT AVG(x.total) FROM fct_invoices x WHERE x.contact_id = i.contact_id)
            ORDER BY i.total DESC LIMIT 50"),
    // Rank customers within each currency.
    (Both, "SELECT currency_code, contact_id, total_revenue,
                   RANK() OVER (PARTITION BY currency_code ORDER BY total_revenue DESC) AS rnk
            FROM (SELECT currency_code, contact_id, SUM(total) AS total_revenue
                  FROM fct_invoices WHERE type = 'ACCREC' GROUP BY currency_code, contact_id) t"),
    // QUALIFY: each customer's largest invoice.
    (Both, "SELECT contact_id, invoice_number, total FROM fct_invoices
            QUALIFY ROW_NUMBER() OVER (PARTITION BY contact_id ORDER BY total DESC) = 1"),
    // Cash in and out by bank account and month.
    (Duck, "SELECT bank_account_code, date_trunc('month', transaction_date) AS month,
                   SUM(CASE WHEN type = 'RECEIVE' THEN total_base ELSE 0 END) AS cash_in,
                   SUM(CASE WHEN type = 'SPEND' THEN total_base ELSE 0 END) AS cash_out
            FROM fct_bank_transactions WHERE status = 'AUTHORISED' GROUP BY 1, 2 ORDER BY 2, 1"),
    (Bq, "SELECT bank_account_code, DATE_TRUNC(transaction_date, MONTH) AS month,
                 COUNTIF(NOT is_reconciled) AS unreconciled, SUM(total_base) AS total
          FROM transformed_acme.fct_bank_transactions GROUP BY 1, 2 ORDER BY 2, 1"),
    // Credit notes outstanding by contact.
    (Both, "SELECT c.name, SUM(n.remaining_credit_base) AS credit
            FROM fct_credit_notes n JOIN dim_contacts c ON c.contact_id = n.contact_id
            WHERE n.remaining_credit_base > 0 GROUP BY c.name HAVING SUM(n.remaining_credit_base) > 100
            ORDER BY credit DESC"),
    // Payables due in the next 30 days.
    (Duck, "SELECT i.invoice_number, c.name, i.due_date, i.amount_due
            FROM fct_invoices i JOIN dim_contacts c USING (contact_id)
            WHERE i.type = 'ACCPAY' AND i.amount_due > 0
              AND i.due_date BETWEEN current_date AND current_date + INTERVAL 30 DAY
            ORDER BY i.due_date"),
    (Bq, "SELECT i.invoice_number, c.name, i.due_date, i.amount_due
          FROM fct_invoices AS i JOIN dim_contacts AS c USING (contact_id)
          WHERE i.type = 'ACCPAY' AND i.amount_due > 0
            AND i.due_date BETWEEN CURRENT_DATE() AND DATE_ADD(CURRENT_DATE(), INTERVAL 30 DAY)
          ORDER BY i.due_date"),
    // Sales and purchases side by side (UNION ALL at the top level).
    (Both, "SELECT 'sales' AS side, SUM(total_base) AS amount FROM fct_invoices WHERE type = 'ACCREC'
            UNION ALL
            SELECT 'purchases' AS side, SUM(total_base) AS amount FROM fct_invoices WHERE type = 'ACCPAY'"),
    // Share of revenue per customer (window over an aggregate).
    (Both, "SELECT contact_id, SUM(total) AS revenue,
                   ROUND(100 * SUM(total) / SUM(SUM(total)) OVER (), 2) AS pct
            FROM fct_invoices WHERE type = 'ACCREC' GROUP BY contact_id ORDER BY revenue DESC"),
    // Weekday pattern of payments.
    (Duck, "SELECT dayname(payment_date) AS weekday, COUNT(*) AS payments, SUM(amount_base) AS amount
            FROM fct_payments GROUP BY 1 ORDER BY 2 DESC"),
    (Bq, "SELECT FORMAT_DATE('%A', payment_date) AS weekday, COUNT(*) AS payments, SUM(amount_base) AS amount
          FROM fct_payments GROUP BY 1 ORDER BY 2 DESC"),
    // Invoices with lines that do not add up (data quality).
    (Both, "WITH line_totals AS (
              SELECT invoice_id, SUM(line_amount) AS lines FROM fct_invoice_lines GROUP BY invoice_id)
            SELECT i.invoice_id, i.sub_total, lt.lines
            FROM fct_invoices i JOIN line_totals lt ON lt.invoice_id = i.invoice_id
            WHERE ABS(i.sub_total - lt.lines) > 0.01"),
    // Contacts with no email, by supplier or customer.
    (Both, "SELECT COALESCE(NULLIF(email, ''), '(none)') AS email, COUNT(*) AS contacts
            FROM dim_contacts WHERE NOT is_unknown AND (is_customer OR is_supplier)
            GROUP BY 1 ORDER BY contacts DESC LIMIT 5"),
    // Year-over-year revenue by month (self-join of a CTE).
    (Both, "WITH m AS (SELECT EXTRACT(YEAR FROM invoice_date) AS y, EXTRACT(MONTH FROM invoice_date) AS mo,
                              SUM(total_base) AS rev FROM fct_invoices WHERE type = 'ACCREC' GROUP BY 1, 2)
            SELECT cur.y, cur.mo, cur.rev, prev.rev AS prev_rev
            FROM m cur LEFT JOIN m prev ON prev.y = cur.y - 1 AND prev.mo = cur.mo
            ORDER BY cur.y, cur.mo"),
    // Columns of the dataset (its own information schema).
    (Bq, "SELECT table_name, column_name, data_type FROM transformed_acme.INFORMATION_SCHEMA.COLUMNS
          ORDER BY table_name, ordinal_position"),
    (Duck, "SELECT table_name, column_name, data_type FROM information_schema.columns ORDER BY table_name"),
    // Quoted and mixed-case spellings of the tenant's own names.
    (Duck, r#"SELECT "Total" FROM "TRANSFORMED_ACME"."main"."FCT_INVOICES" LIMIT 3"#),
    (Bq, "SELECT total FROM `transformed_acme`.`fct_invoices` WHERE status = 'PAID' LIMIT 3"),
    // Distinct currencies, a median, string aggregation.
    (Duck, "SELECT currency_code, median(total) AS median_total,
                   string_agg(DISTINCT status, ', ' ORDER BY status) AS statuses
            FROM fct_invoices GROUP BY currency_code"),
    (Bq, "SELECT currency_code, APPROX_COUNT_DISTINCT(contact_id) AS customers,
                 STRING_AGG(DISTINCT status, ', ') AS statuses, SAFE_DIVIDE(SUM(amount_paid), SUM(total)) AS paid_ratio
          FROM fct_invoices GROUP BY currency_code"),
    // SELECT * EXCLUDE / EXCEPT.
    (Duck, "SELECT * EXCLUDE (reference) FROM fct_payments WHERE amount > 1000 ORDER BY amount DESC LIMIT 100"),
    (Bq, "SELECT * EXCEPT (reference) FROM fct_payments WHERE amount > 1000 ORDER BY amount DESC LIMIT 100"),
    // CAST, COALESCE, IN list, LIKE.
    (Duck, "SELECT CAST(invoice_date AS VARCHAR) AS day, COALESCE(reference, '') AS ref
            FROM fct_invoices WHERE invoice_number LIKE 'INV-%' AND status IN ('PAID', 'AUTHORISED') LIMIT 25"),
    (Bq, "SELECT CAST(invoice_date AS STRING) AS day, IFNULL(reference, '') AS ref
          FROM fct_invoices WHERE STARTS_WITH(invoice_number, 'INV-') AND status IN ('PAID', 'AUTHORISED') LIMIT 25"),
];
