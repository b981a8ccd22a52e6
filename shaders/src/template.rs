//! The template filler: `{{name}}` placeholders in .wgsl files, filled from named values.
//! A placeholder left without a value, or a value no placeholder asks for, is an error.
//!
//! `{{for i in COUNT}} ... {{end}}` writes its body out COUNT times (COUNT a value's name or a
//! number), with `{{i}}` standing for 0, 1, ... in each copy; fors nest. Templates use it for
//! loops of a constant trip count (a register block's rows and columns): a loop written out
//! makes no trips at run time, so the kernel's loop-trip count (`crate::loops`) is what the
//! generator says it is, whatever the shader compiler unrolls.

use crate::Error;

/// Fill every `{{name}}` in `src` from `values`.
pub fn render(name: &str, src: &str, values: &[(&str, String)]) -> Result<String, Error> {
    let mut used = vec![false; values.len()];
    let mut out = String::with_capacity(src.len() + 64);
    fill(name, src, values, &[], &mut used, &mut out)?;
    if let Some(k) = used.iter().position(|u| !u) {
        return Err(Error::Template(format!(
            "template {name}: value '{}' fills no placeholder",
            values[k].0
        )));
    }
    Ok(out)
}

/// The end of the `{{for}}` body that starts at `body` (the index of its `{{end}}`), skipping
/// nested fors.
fn matching_end(name: &str, body: &str) -> Result<(usize, usize), Error> {
    let mut depth = 0usize;
    let mut at = 0;
    while let Some(s) = body[at..].find("{{") {
        let start = at + s;
        let end = body[start..]
            .find("}}")
            .ok_or_else(|| Error::Template(format!("template {name}: unclosed placeholder")))?;
        let key = body[start + 2..start + end].trim();
        if key.starts_with("for ") {
            depth += 1;
        } else if key == "end" {
            if depth == 0 {
                return Ok((start, start + end + 2));
            }
            depth -= 1;
        }
        at = start + end + 2;
    }
    Err(Error::Template(format!(
        "template {name}: a {{{{for}}}} without its {{{{end}}}}"
    )))
}

fn fill(
    name: &str,
    src: &str,
    values: &[(&str, String)],
    indices: &[(&str, usize)],
    used: &mut [bool],
    out: &mut String,
) -> Result<(), Error> {
    let mut rest = src;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| Error::Template(format!("template {name}: unclosed placeholder")))?;
        let key = after[..end].trim();
        rest = &after[end + 2..];
        if let Some(spec) = key.strip_prefix("for ") {
            let (var, count) = spec.split_once(" in ").ok_or_else(|| {
                Error::Template(format!(
                    "template {name}: '{{{{{key}}}}}' is not 'for i in N'"
                ))
            })?;
            let (var, count) = (var.trim(), count.trim());
            let n = match count.parse::<usize>() {
                Ok(n) => n,
                Err(_) => {
                    let k = values
                        .iter()
                        .position(|(n, _)| *n == count)
                        .ok_or_else(|| {
                            Error::Template(format!(
                                "template {name}: no value for count '{count}'"
                            ))
                        })?;
                    used[k] = true;
                    values[k].1.trim().parse::<usize>().map_err(|_| {
                        Error::Template(format!(
                            "template {name}: count '{count}' = '{}' is not a number",
                            values[k].1
                        ))
                    })?
                }
            };
            let (body_end, after_end) = matching_end(name, rest)?;
            let body = &rest[..body_end];
            let mut inner: Vec<(&str, usize)> = indices.to_vec();
            inner.push((var, 0));
            for i in 0..n {
                inner.last_mut().expect("pushed above").1 = i;
                fill(name, body, values, &inner, used, out)?;
            }
            if n == 0 {
                // Placeholders of an empty body still count as used.
                let mut sink = String::new();
                fill(name, body, values, &inner, used, &mut sink)?;
            }
            rest = &rest[after_end..];
            continue;
        }
        if key == "end" {
            return Err(Error::Template(format!(
                "template {name}: an {{{{end}}}} without its {{{{for}}}}"
            )));
        }
        if let Some(&(_, i)) = indices.iter().rev().find(|(v, _)| *v == key) {
            out.push_str(&i.to_string());
            continue;
        }
        let k = values.iter().position(|(n, _)| *n == key).ok_or_else(|| {
            Error::Template(format!("template {name}: no value for placeholder '{key}'"))
        })?;
        used[k] = true;
        out.push_str(&values[k].1);
    }
    out.push_str(rest);
    Ok(())
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

    #[test]
    fn writes_loops_out() {
        let t = "{{for r in rows}}[{{for c in 2}}{{r}}{{c}}{{x}} {{end}}]{{end}}";
        assert_eq!(
            render("t", t, &[("rows", "2".into()), ("x", ".".into())]).unwrap(),
            "[00. 01. ][10. 11. ]"
        );
        assert_eq!(
            render("t", t, &[("rows", "0".into()), ("x", ".".into())]).unwrap(),
            ""
        );
        assert!(render("t", "{{for r in 2}}x", &[]).is_err());
        assert!(render("t", "x{{end}}", &[]).is_err());
        assert!(render("t", "{{for r in n}}x{{end}}", &[("n", "two".into())]).is_err());
        assert!(render("t", "{{for r}}x{{end}}", &[]).is_err());
    }
}
