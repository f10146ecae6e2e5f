//! Python's `str()` and `repr()` of JSON values, for error messages that must match the
//! reference's f-strings: `f"{c}"` is `str(c)` and `f"{c=}"` is `c=` followed by `repr(c)`.

use serde_json::{Number, Value};

/// `str(value)`: like [`repr`] except that a top-level string is shown raw.
pub(super) fn str(value: Option<&Value>) -> String {
    match value {
        Some(Value::String(s)) => s.clone(),
        other => repr(other),
    }
}

/// `repr(value)`, with a missing value as `None`.
pub(super) fn repr(value: Option<&Value>) -> String {
    let mut out = String::new();
    write_repr(value.unwrap_or(&Value::Null), &mut out);
    out
}

fn write_repr(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("None"),
        Value::Bool(true) => out.push_str("True"),
        Value::Bool(false) => out.push_str("False"),
        Value::Number(n) => out.push_str(&number(n)),
        Value::String(s) => out.push_str(&string(s)),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_repr(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (key, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(&string(key));
                out.push_str(": ");
                write_repr(item, out);
            }
            out.push('}');
        }
    }
}

/// A JSON number as Python shows it: ints as-is, floats always with a `.` or an exponent.
pub(super) fn number(n: &Number) -> String {
    match n.as_f64() {
        Some(f) if n.is_f64() => float(f),
        _ => n.to_string(),
    }
}

/// Python's `repr(float)`: shortest round-trip digits, exponent form outside [1e-4, 1e16).
fn float(f: f64) -> String {
    let magnitude = f.abs();
    if magnitude != 0.0 && !(1e-4..1e16).contains(&magnitude) {
        let text = format!("{f:e}");
        let (mantissa, exponent) = text.split_once('e').expect("`{:e}` has an exponent");
        let exponent: i32 = exponent.parse().expect("integer exponent");
        let sign = if exponent < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exponent.abs())
    } else if f.fract() == 0.0 {
        format!("{f:.1}")
    } else {
        format!("{f}")
    }
}

/// Python's `repr(str)`: single quotes unless the text has `'` and no `"`.
fn string(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn r(value: Value) -> String {
        repr(Some(&value))
    }

    #[test]
    fn scalars_use_python_spellings() {
        assert_eq!(repr(None), "None");
        assert_eq!(r(json!(null)), "None");
        assert_eq!(r(json!(true)), "True");
        assert_eq!(r(json!(false)), "False");
        assert_eq!(r(json!(-3)), "-3");
        assert_eq!(r(json!(100.0)), "100.0");
        assert_eq!(r(json!(1.5)), "1.5");
        assert_eq!(r(json!(1e20)), "1e+20");
        assert_eq!(r(json!(0.00001)), "1e-05");
    }

    #[test]
    fn strings_are_quoted_like_python() {
        assert_eq!(r(json!("up")), "'up'");
        assert_eq!(r(json!("it's")), "\"it's\"");
        assert_eq!(r(json!("a'b\"c")), "'a\\'b\"c'");
        assert_eq!(r(json!("tab\there\n")), "'tab\\there\\n'");
    }

    #[test]
    fn containers_nest_reprs() {
        assert_eq!(r(json!([1, 2, 3])), "[1, 2, 3]");
        assert_eq!(r(json!([100.0, "x", null])), "[100.0, 'x', None]");
        assert_eq!(r(json!({"a": [true]})), "{'a': [True]}");
        assert_eq!(r(json!([])), "[]");
    }

    #[test]
    fn str_shows_top_level_strings_raw() {
        assert_eq!(str(Some(&json!("100,200"))), "100,200");
        assert_eq!(str(Some(&json!(["a"]))), "['a']");
        assert_eq!(str(None), "None");
    }
}
