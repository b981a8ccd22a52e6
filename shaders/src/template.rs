//! The template filler: `{{name}}` placeholders in .wgsl files, filled from named values.
//! A placeholder left without a value, or a value no placeholder asks for, is an error.

use crate::Error;

/// Fill every `{{name}}` in `src` from `values`.
pub fn render(name: &str, src: &str, values: &[(&str, String)]) -> Result<String, Error> {
    let mut out = String::with_capacity(src.len() + 64);
    let mut used = vec![false; values.len()];
    let mut rest = src;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| Error::Template(format!("template {name}: unclosed placeholder")))?;
        let key = after[..end].trim();
        let k = values.iter().position(|(n, _)| *n == key).ok_or_else(|| {
            Error::Template(format!("template {name}: no value for placeholder '{key}'"))
        })?;
        used[k] = true;
        out.push_str(&values[k].1);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    if let Some(k) = used.iter().position(|u| !u) {
        return Err(Error::Template(format!(
            "template {name}: value '{}' fills no placeholder",
            values[k].0
        )));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_and_checks() {
        assert_eq!(
            render(
                "t",
                "a {{x}} b {{ y }}",
                &[("x", "1".into()), ("y", "2".into())]
            )
            .unwrap(),
            "a 1 b 2"
        );
        assert!(render("t", "a {{x}}", &[]).is_err());
        assert!(render("t", "a", &[("x", "1".into())]).is_err());
        assert!(render("t", "a {{x", &[("x", "1".into())]).is_err());
    }
}
