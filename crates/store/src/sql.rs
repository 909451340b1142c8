//! The list query both SQL stores run, written once. It is driven by the index that already
//! holds the rows in the order asked for, so a page costs about the same however many
//! requests, tasks or participations there are: the approver's tasks (`approver=`), else the
//! caller's participations (everyone but admins), else all requests; newest first. Sorted by
//! due time it is driven by the open tasks (only open requests have a due time).

use crate::{ListQuery, ListSort, Result, StoreError, TaskQuery};

/// A value bound to a placeholder of the query.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlArg {
    Int(i64),
    Text(String),
}

/// The statements that read a page of tasks and count them, and their arguments (the limit
/// and offset last, which the count does not take). `order` is the store's `ORDER BY` over
/// `t` (each store orders as its index does); `placeholder(k)` writes the k-th placeholder.
/// A policy is a filter on the request each task joins.
pub fn task_query(q: &TaskQuery, order: &str, placeholder: impl Fn(usize) -> String) -> (String, String, Vec<SqlArg>) {
    let mut filters = Vec::new();
    let mut args = Vec::new();
    if let Some(a) = &q.approver {
        args.push(SqlArg::Text(a.clone()));
        filters.push(format!("t.approver = {}", placeholder(args.len())));
    }
    if let Some(p) = &q.policy {
        args.push(SqlArg::Text(p.clone()));
        filters.push(format!("r.policy_id = {}", placeholder(args.len())));
    }
    let from = if q.policy.is_some() { "tasks t JOIN requests r ON r.n = t.request_n" } else { "tasks t" };
    let filter = if filters.is_empty() { String::new() } else { format!(" WHERE {}", filters.join(" AND ")) };
    let count = format!("SELECT count(*) FROM {from}{filter}");
    let n = args.len();
    let select = format!("SELECT t.approver, t.body FROM {from}{filter} ORDER BY {order} LIMIT {} OFFSET {}", placeholder(n + 1), placeholder(n + 2));
    args.extend([SqlArg::Int(q.limit.into()), SqlArg::Int(q.offset.into())]);
    (select, count, args)
}

/// The SQL of a `list` page (columns: the row's cursor as text and its state JSON, at most
/// `limit + 1` rows, so the caller can tell whether more follow), with placeholders written by
/// `placeholder(k)` for the k-th argument (1-based), and the arguments.
pub fn list_query(q: &ListQuery, placeholder: impl Fn(usize) -> String) -> Result<(String, Vec<SqlArg>)> {
    let mut args = Vec::new();
    let mut bind = |sql: &mut String, clause: &str, v: SqlArg| {
        args.push(v);
        sql.push_str(&clause.replace('?', &placeholder(args.len())));
    };
    let mut sql = String::new();
    let order = match q.sort {
        ListSort::Newest => {
            sql.push_str("SELECT CAST(r.n AS TEXT), r.state FROM ");
            // CROSS JOIN keeps the driving table outermost in SQLite; PostgreSQL plans it as a join.
            let key = if let Some(approver) = &q.approver {
                bind(&mut sql, "tasks d CROSS JOIN requests r WHERE d.approver = ? AND r.n = d.request_n", SqlArg::Text(approver.clone()));
                // One row per request, though the approver may have tasks on several of its steps.
                sql.push_str(" AND NOT EXISTS (SELECT 1 FROM tasks e WHERE e.approver = d.approver AND e.request_n = d.request_n AND e.step_id < d.step_id)");
                if let Some(user) = &q.visible_to {
                    bind(&mut sql, " AND EXISTS (SELECT 1 FROM participants p WHERE p.user_id = ? AND p.request_n = d.request_n)", SqlArg::Text(user.clone()));
                }
                "d.request_n"
            } else if let Some(user) = &q.visible_to {
                bind(&mut sql, "participants d CROSS JOIN requests r WHERE d.user_id = ? AND r.n = d.request_n", SqlArg::Text(user.clone()));
                "d.request_n"
            } else {
                sql.push_str("requests r WHERE TRUE");
                "r.n"
            };
            if let Some(cursor) = &q.cursor {
                // A cursor of the due order (`due.n`) positions at the same request.
                let n: i64 = cursor.rsplit('.').next().unwrap_or(cursor).parse().map_err(|_| bad_cursor(cursor))?;
                bind(&mut sql, &format!(" AND {key} < ?"), SqlArg::Int(n));
            }
            format!(" ORDER BY {key} DESC")
        }
        ListSort::Due => {
            // Only open requests have tasks; one without a due time sorts after every dated one
            // (as the largest 18-digit number, so every cursor fits the documented pattern).
            sql.push_str(
                "SELECT CAST(x.due AS TEXT) || '.' || CAST(r.n AS TEXT), r.state FROM \
                 (SELECT request_n, COALESCE(MIN(due_at), 999999999999999999) AS due FROM tasks GROUP BY request_n) x \
                 CROSS JOIN requests r WHERE r.n = x.request_n",
            );
            if let Some(approver) = &q.approver {
                bind(&mut sql, " AND EXISTS (SELECT 1 FROM tasks e WHERE e.approver = ? AND e.request_n = r.n)", SqlArg::Text(approver.clone()));
            }
            if let Some(user) = &q.visible_to {
                bind(&mut sql, " AND EXISTS (SELECT 1 FROM participants p WHERE p.user_id = ? AND p.request_n = r.n)", SqlArg::Text(user.clone()));
            }
            if let Some(cursor) = &q.cursor {
                // `due.n`; a bare number (a cursor of the newest order) is a due time.
                let (due, n) = cursor.split_once('.').unwrap_or((cursor, "0"));
                let (due, n) = due.parse::<i64>().ok().zip(n.parse::<i64>().ok()).ok_or_else(|| bad_cursor(cursor))?;
                bind(&mut sql, " AND (x.due > ?", SqlArg::Int(due));
                bind(&mut sql, " OR (x.due = ?", SqlArg::Int(due));
                bind(&mut sql, " AND r.n > ?))", SqlArg::Int(n));
            }
            " ORDER BY x.due, r.n".to_string()
        }
    };
    if let Some(at) = q.overdue_at {
        bind(&mut sql, " AND EXISTS (SELECT 1 FROM tasks o WHERE o.request_n = r.n AND o.due_at < ?)", SqlArg::Int(at.as_millisecond()));
    }
    if let Some(s) = q.status {
        bind(&mut sql, " AND r.status = ?", SqlArg::Text(s.as_str().to_string()));
    }
    if let Some(p) = &q.policy {
        bind(&mut sql, " AND r.policy_id = ?", SqlArg::Text(p.clone()));
    }
    if let Some(r) = &q.requester {
        bind(&mut sql, " AND r.requester = ?", SqlArg::Text(r.clone()));
    }
    if let Some(s) = &q.subject {
        bind(&mut sql, " AND r.subject = ?", SqlArg::Text(s.clone()));
    }
    let limit = q.limit.clamp(1, 500) as i64;
    bind(&mut sql, &format!("{order} LIMIT ?"), SqlArg::Int(limit + 1));
    Ok((sql, args))
}

fn bad_cursor(cursor: &str) -> StoreError {
    StoreError::Invalid(format!("`{cursor}` is not a cursor this server issued"))
}

/// A page from the rows of `list_query` (row number, state JSON), decoded: at most `limit`
/// items, ending early before the item that would take it past `max_bytes` of JSON (one item
/// at least). Rows are read only as far as the page goes: pass them lazily.
pub fn list_page<S: AsRef<str>>(q: &ListQuery, rows: impl IntoIterator<Item = Result<(String, S)>>) -> Result<crate::Page> {
    let limit = q.limit.clamp(1, 500) as usize;
    let max_bytes = q.max_bytes.unwrap_or(usize::MAX);
    let (mut items, mut last, mut more, mut bytes) = (Vec::new(), None, false, 0usize);
    for row in rows {
        let (n, text) = row?;
        let text = text.as_ref();
        bytes = bytes.saturating_add(text.len());
        if items.len() == limit || (bytes > max_bytes && !items.is_empty()) {
            more = true;
            break;
        }
        items.push(crate::decode(text)?);
        last = Some(n);
    }
    Ok(crate::Page { items, next_cursor: if more { last } else { None } })
}
