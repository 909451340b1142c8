//! The list query both SQL stores run, written once. It is driven by the index that already
//! holds the rows in the order asked for, so a page costs about the same however many
//! requests, tasks or participations there are: the approver's tasks (`approver=`), else the
//! caller's participations (everyone but admins), else all requests; newest first throughout.

use crate::{ListQuery, Result, StoreError};

/// A value bound to a placeholder of the query.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlArg {
    Int(i64),
    Text(String),
}

/// The SQL of a `list` page (columns: the request's row number and its state JSON, at most
/// `limit + 1` rows, so the caller can tell whether more follow), with placeholders written by
/// `placeholder(k)` for the k-th argument (1-based), and the arguments.
pub fn list_query(q: &ListQuery, placeholder: impl Fn(usize) -> String) -> Result<(String, Vec<SqlArg>)> {
    let mut args = Vec::new();
    let mut sql = String::from("SELECT r.n, r.state FROM ");
    let mut bind = |sql: &mut String, clause: &str, v: SqlArg| {
        args.push(v);
        sql.push_str(&clause.replace('?', &placeholder(args.len())));
    };
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
        let n: i64 = cursor.parse().map_err(|_| StoreError::Invalid(format!("`{cursor}` is not a cursor this server issued")))?;
        bind(&mut sql, &format!(" AND {key} < ?"), SqlArg::Int(n));
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
    bind(&mut sql, &format!(" ORDER BY {key} DESC LIMIT ?"), SqlArg::Int(limit + 1));
    Ok((sql, args))
}

/// A page from the rows of `list_query` (row number, state JSON), decoded: at most `limit`
/// items, ending early before the item that would take it past `max_bytes` of JSON (one item
/// at least). Rows are read only as far as the page goes: pass them lazily.
pub fn list_page<S: AsRef<str>>(q: &ListQuery, rows: impl IntoIterator<Item = Result<(i64, S)>>) -> Result<crate::Page> {
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
    Ok(crate::Page { items, next_cursor: if more { last.map(|n| n.to_string()) } else { None } })
}
