//! Form fields built from a JSON Schema property: the right input for its type (a number with
//! its bounds, a choice for an enum, yes/no for a boolean, text, or JSON for anything looser),
//! and the way back from what was typed to a JSON value. The approve-with-edits dialog and the
//! new-request form both draw their fields from here.

use serde_json::Value;

/// What input a field is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Number,
    Integer,
    Boolean,
    /// One of the schema's `enum` values; each option's value is its JSON text.
    Choice,
    Text,
    /// Anything the schema leaves loose: typed as JSON.
    Json,
}

impl Kind {
    /// The input a property's schema `prop` calls for.
    pub(super) fn of(prop: &Value) -> Kind {
        let ty = match &prop["type"] {
            Value::String(t) => Some(t.as_str()),
            Value::Array(ts) => ts.iter().filter_map(Value::as_str).find(|t| *t != "null"),
            _ => None,
        };
        match (prop.get("enum"), ty) {
            (Some(Value::Array(_)), _) => Kind::Choice,
            (_, Some("number")) => Kind::Number,
            (_, Some("integer")) => Kind::Integer,
            (_, Some("boolean")) => Kind::Boolean,
            (_, Some("string")) => Kind::Text,
            _ => Kind::Json,
        }
    }

    /// The kind of property `key` of the object schema `schema`.
    pub(super) fn of_key(schema: Option<&Value>, key: &str) -> Kind {
        Kind::of(property(schema, key))
    }
}

/// Property `key` of the object schema `schema` (its `properties`); `null` where it has none.
fn property<'a>(schema: Option<&'a Value>, key: &str) -> &'a Value {
    schema.and_then(|s| s.get("properties")).and_then(|p| p.get(key)).unwrap_or(&Value::Null)
}

/// One field of a form.
pub(super) struct Field {
    /// The schema property (a top-level context key).
    pub key: String,
    /// The form field's name.
    pub name: String,
    /// The element id, unique on the page.
    pub id: String,
    pub label: String,
    pub kind: Kind,
    /// What the input shows: the current value as text.
    pub value: String,
    /// For a choice: (value as JSON text, label).
    pub options: Vec<(String, String)>,
    pub min: String,
    pub max: String,
    pub max_length: String,
    /// What the schema allows, said in words.
    pub hint: String,
    /// The schema's own `errorMessage` for this property, for the script's check.
    pub error_message: String,
    /// What the server said is wrong with it.
    pub error: String,
    pub required: bool,
}

impl Field {
    /// The field for property `key` of `schema` (an object schema, its `properties`), showing
    /// `current`. `prefix` names the form fields (`edit.discount`) and scopes the ids.
    pub(super) fn of(schema: Option<&Value>, key: &str, current: Option<&Value>, prefix: &str, scope: &str) -> Field {
        Field::for_property(property(schema, key), key, current, prefix, scope)
    }

    /// The field for one property's schema `prop`.
    pub(super) fn for_property(prop: &Value, key: &str, current: Option<&Value>, prefix: &str, scope: &str) -> Field {
        let kind = Kind::of(prop);
        let value = match (kind, current) {
            (_, None | Some(Value::Null)) => String::new(),
            (Kind::Choice, Some(v)) => v.to_string(),
            (Kind::Text, Some(Value::String(s))) => s.clone(),
            (_, Some(v)) => v.to_string(),
        };
        let options = prop["enum"]
            .as_array()
            .map(|vs| vs.iter().map(|v| (v.to_string(), v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string()))).collect())
            .unwrap_or_default();
        let text = |k: &str| prop.get(k).filter(|v| v.is_number()).map(Value::to_string).unwrap_or_default();
        let (min, max) = (text("minimum"), text("maximum"));
        let mut hint = Vec::new();
        match (min.as_str(), max.as_str()) {
            ("", "") => {}
            (lo, "") => hint.push(format!("at least {lo}")),
            ("", hi) => hint.push(format!("at most {hi}")),
            (lo, hi) => hint.push(format!("from {lo} to {hi}")),
        }
        if let Some(n) = prop["exclusiveMaximum"].as_f64() {
            hint.push(format!("below {n}"));
        }
        if let Some(n) = prop["exclusiveMinimum"].as_f64() {
            hint.push(format!("above {n}"));
        }
        let max_length = text("maxLength");
        if !max_length.is_empty() {
            hint.push(format!("up to {max_length} characters"));
        }
        if kind == Kind::Integer {
            hint.push("a whole number".into());
        }
        if kind == Kind::Json {
            hint.push("JSON".into());
        }
        let label = prop["title"].as_str().unwrap_or(key).to_string();
        let description = prop["description"].as_str().map(|d| format!("{d}. ")).unwrap_or_default();
        Field {
            key: key.to_string(),
            name: format!("{prefix}{key}"),
            id: format!("{scope}-{}", key.replace(|c: char| !c.is_ascii_alphanumeric(), "_")),
            label,
            kind,
            value,
            options,
            min,
            max,
            max_length,
            hint: format!("{description}{}", hint.join(", ")).trim().to_string(),
            error_message: prop["errorMessage"].as_str().unwrap_or_default().to_string(),
            error: String::new(),
            required: false,
        }
    }

    /// What the person typed, as the JSON value it stands for; `None` for an empty field.
    pub(super) fn read(kind: Kind, typed: &str) -> Result<Option<Value>, String> {
        let typed = typed.trim();
        if typed.is_empty() {
            return Ok(None);
        }
        let value = match kind {
            Kind::Text => Value::String(typed.to_string()),
            Kind::Integer => typed.parse::<i64>().map(Value::from).map_err(|_| format!("`{typed}` is not a whole number"))?,
            Kind::Number => match typed.parse::<i64>() {
                Ok(n) => Value::from(n),
                Err(_) => typed
                    .parse::<f64>()
                    .ok()
                    .and_then(serde_json::Number::from_f64)
                    .map(Value::Number)
                    .ok_or_else(|| format!("`{typed}` is not a number"))?,
            },
            Kind::Boolean => match typed {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                _ => return Err(format!("`{typed}` is neither yes nor no")),
            },
            Kind::Choice | Kind::Json => serde_json::from_str(typed).map_err(|e| format!("not valid JSON: {e}"))?,
        };
        Ok(Some(value))
    }

    pub(super) fn is(&self, kind: &str) -> bool {
        let mine = match self.kind {
            Kind::Number => "number",
            Kind::Integer => "integer",
            Kind::Boolean => "boolean",
            Kind::Choice => "choice",
            Kind::Text => "text",
            Kind::Json => "json",
        };
        mine == kind
    }

    /// The ids the input is described by: its hint and its error.
    pub(super) fn described_by(&self) -> String {
        let mut ids = Vec::new();
        if !self.hint.is_empty() {
            ids.push(format!("{}-hint", self.id));
        }
        ids.push(format!("{}-error", self.id));
        ids.join(" ")
    }
}

/// Schema messages (`at /quote/discount: must be at most 1`) with the place they are at, as a
/// dotted path (`quote.discount`); a message at no place has "".
pub(super) fn messages_by_path<'a>(messages: impl IntoIterator<Item = &'a str>) -> Vec<(String, String)> {
    messages
        .into_iter()
        .map(|m| match m.strip_prefix("at /").and_then(|rest| rest.split_once(": ")) {
            Some((path, message)) => {
                let path: Vec<String> = path.split('/').map(|p| p.replace("~1", "/").replace("~0", "~")).collect();
                (path.join("."), message.to_string())
            }
            None => (String::new(), m.to_string()),
        })
        .collect()
}

/// Whether a message at `path` belongs to the field at `field` (itself or within it).
pub(super) fn at(path: &str, field: &str) -> bool {
    path == field || path.strip_prefix(field).is_some_and(|rest| rest.starts_with('.'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_bounded_number_says_its_bounds_and_reads_back_as_a_number() {
        let schema = json!({"properties": {"discount": {"type": "number", "minimum": 0, "maximum": 0.3, "errorMessage": "at most 30%"}}});
        let f = Field::of(Some(&schema), "discount", Some(&json!(0.25)), "edit.", "s");
        assert_eq!((f.kind, f.value.as_str(), f.hint.as_str(), f.error_message.as_str()), (Kind::Number, "0.25", "from 0 to 0.3", "at most 30%"));
        assert_eq!(Field::read(Kind::Number, " 0.2 ").unwrap(), Some(json!(0.2)));
        assert_eq!(Field::read(Kind::Number, "12").unwrap(), Some(json!(12)));
        assert!(Field::read(Kind::Number, "lots").is_err());
        assert_eq!(Field::read(Kind::Text, "  ").unwrap(), None);
    }

    #[test]
    fn an_enum_is_a_choice_of_json_values() {
        let schema = json!({"properties": {"region": {"enum": ["eu", "us"]}}});
        let f = Field::of(Some(&schema), "region", Some(&json!("us")), "", "n");
        assert_eq!(f.kind, Kind::Choice);
        assert_eq!(f.value, "\"us\"");
        assert_eq!(f.options[0], ("\"eu\"".to_string(), "eu".to_string()));
        assert_eq!(Field::read(Kind::Choice, "\"eu\"").unwrap(), Some(json!("eu")));
    }

    #[test]
    fn schema_messages_are_placed_by_their_path() {
        let by = messages_by_path("at /discount: at most 30%; at /term_months/0: too long; the edits are odd".split("; "));
        assert_eq!(by, vec![("discount".into(), "at most 30%".into()), ("term_months.0".into(), "too long".into()), (String::new(), "the edits are odd".into())]);
        assert!(at("term_months.0", "term_months") && at("discount", "discount") && !at("discount_extra", "discount"));
    }
}
