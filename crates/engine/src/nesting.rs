//! How deeply JSON may nest. One limit applies at the door to everything a client sends, so
//! that whatever is accepted can always be stored and read back: stored events and states wrap
//! a client's value in a few levels of their own, and readers accept far more than that
//! (`READ_MAX_DEPTH`).

use serde_json::Value;

/// The deepest nesting of arrays and objects a request body may have (`{}` is 1, `{"a": []}`
/// is 2). Deeper bodies are refused with 400 `too_deep`.
pub const MAX_DEPTH: usize = 64;

/// The deepest nesting a reader of stored JSON accepts: well beyond what the door lets in plus
/// the levels events and exports add, and beyond what releases that checked less could store.
pub const READ_MAX_DEPTH: usize = 512;

/// The nesting depth of JSON text, counted without parsing it (and without recursion), so
/// that arbitrarily deep input costs one pass. Brackets inside strings do not count; the text
/// need not be valid JSON.
pub fn text_depth(text: &[u8]) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for &b in text {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// The nesting depth of a parsed value, without recursion.
pub fn value_depth(value: &Value) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(value, 1usize)];
    while let Some((v, depth)) = stack.pop() {
        match v {
            Value::Array(items) => {
                deepest = deepest.max(depth);
                stack.extend(items.iter().map(|i| (i, depth + 1)));
            }
            Value::Object(map) => {
                deepest = deepest.max(depth);
                stack.extend(map.values().map(|i| (i, depth + 1)));
            }
            _ => {}
        }
    }
    deepest
}

/// Nested arrays, `depth` deep, around `inner` (for tests and benchmarks).
pub fn nested(depth: usize, inner: &str) -> String {
    format!("{}{inner}{}", "[".repeat(depth), "]".repeat(depth))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_value_depth_agree() {
        for text in ["1", "\"[[[\"", "{}", "[]", "{\"a\": []}", "[[1], [[2]]]", "{\"a\": {\"b\": \"}}}]]]\\\"[[\"}}"] {
            let v: Value = serde_json::from_str(text).unwrap();
            assert_eq!(text_depth(text.as_bytes()), value_depth(&v), "{text}");
        }
        assert_eq!(text_depth(nested(10_000, "").as_bytes()), 10_000);
        assert_eq!(text_depth(b"{\"a\": 1}"), 1);
    }
}
