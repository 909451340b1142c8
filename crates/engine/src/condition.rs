//! CEL conditions, compiled once when a policy is loaded and evaluated against a request's
//! variables. A run-time failure (a missing field, a type error) is an error that names the
//! expression, never a silent `false`.

use std::fmt;
use std::sync::Arc;

use serde_json::Value;

/// A compiled CEL expression together with the text it was written as.
#[derive(Clone)]
pub struct Condition {
    source: Arc<str>,
    program: Arc<cel::Program>,
}

impl fmt::Debug for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Condition({:?})", self.source)
    }
}

/// Why an expression could not be evaluated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{expression}`: {message}")]
pub struct EvalError {
    pub expression: String,
    pub message: String,
}

/// The variables an expression sees: the context's top-level keys plus `requester` and, in
/// `eligible_if`, `approver`. Converted to CEL values once and reused for every expression.
pub struct Vars {
    ctx: cel::Context<'static, 'static>,
}

impl Vars {
    /// Variables from a context object; its top-level keys become variables.
    pub fn from_context(context: &Value) -> Self {
        // The standard environment is built once: building it per evaluation dominated planning.
        static STDLIB: std::sync::LazyLock<Arc<cel::Env>> = std::sync::LazyLock::new(|| Arc::new(cel::Env::stdlib()));
        let mut vars = Vars { ctx: cel::Context::with_env(STDLIB.clone()) };
        if let Value::Object(map) = context {
            for (k, v) in map {
                vars.set(k, v);
            }
        }
        vars
    }

    pub fn with(mut self, name: &str, value: &Value) -> Self {
        self.set(name, value);
        self
    }

    pub fn set(&mut self, name: &str, value: &Value) {
        // Converting a serde_json value cannot fail: every JSON value has a CEL counterpart.
        if let Ok(v) = cel::to_value(value) {
            self.ctx.add_variable_from_value(name, v);
        }
    }
}

impl Condition {
    /// Compiles `source`; the error is the parser's message.
    pub fn compile(source: &str) -> Result<Self, String> {
        let program = cel::Program::compile(source).map_err(|e| {
            e.to_string()
                .lines()
                .next()
                .unwrap_or("syntax error")
                .trim_start_matches("ERROR: ")
                .to_string()
        })?;
        Ok(Condition { source: source.into(), program: Arc::new(program) })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// Evaluates to a JSON value.
    pub fn eval(&self, vars: &Vars) -> Result<Value, EvalError> {
        let fail = |message: String| EvalError { expression: self.source.to_string(), message };
        let out = self.program.execute(&vars.ctx).map_err(|e| fail(describe(&e)))?;
        out.json().map_err(|e| fail(e.to_string()))
    }

    /// Evaluates to a boolean; any other result type is an error.
    pub fn eval_bool(&self, vars: &Vars) -> Result<bool, EvalError> {
        match self.eval(vars)? {
            Value::Bool(b) => Ok(b),
            other => Err(EvalError {
                expression: self.source.to_string(),
                message: format!("expected a boolean, got {}", json_type(&other)),
            }),
        }
    }
}

fn describe(e: &cel::ExecutionError) -> String {
    match e {
        cel::ExecutionError::NoSuchKey(key) => format!("no such field `{key}`"),
        cel::ExecutionError::UndeclaredReference(name) => format!("unknown variable `{name}`"),
        other => other.to_string(),
    }
}

pub(crate) fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vars() -> Vars {
        Vars::from_context(&json!({"quote": {"total": 48000, "discount": 0.18}}))
            .with("requester", &json!({"id": "alice", "manager": "mark"}))
    }

    #[test]
    fn evaluates_numbers_across_int_and_float() {
        let c = Condition::compile("quote.total > 1000.5 && quote.discount > 0.10").unwrap();
        assert!(c.eval_bool(&vars()).unwrap());
    }

    #[test]
    fn missing_field_is_an_error_naming_the_expression() {
        let c = Condition::compile("quote.margin < 0.2").unwrap();
        let err = c.eval_bool(&vars()).unwrap_err();
        assert_eq!(err.expression, "quote.margin < 0.2");
        assert!(err.message.contains("margin"), "{}", err.message);
    }

    #[test]
    fn non_boolean_is_an_error() {
        let c = Condition::compile("requester.manager").unwrap();
        assert_eq!(c.eval(&vars()).unwrap(), json!("mark"));
        assert!(c.eval_bool(&vars()).is_err());
    }

    #[test]
    fn compile_error_is_reported() {
        assert!(Condition::compile("1 +").is_err());
    }
}
