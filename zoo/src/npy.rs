//! `.npy` files (NumPy's array format, version 1 to 3, C order, little-endian) for
//! `sfumato run --input NAME=FILE.npy` and `--output DIR`.

use sfumato_core::{DType, Shape, Tensor};

const MAGIC: &[u8] = b"\x93NUMPY";

/// NumPy's type string of a dtype; None for bfloat16 and the 8-, 4- and 2-bit types, which
/// NumPy has no standard type for.
fn descr(d: DType) -> Option<&'static str> {
    Some(match d {
        DType::F32 => "<f4",
        DType::F16 => "<f2",
        DType::F64 => "<f8",
        DType::I32 => "<i4",
        DType::I64 => "<i8",
        DType::I8 => "|i1",
        DType::I16 => "<i2",
        DType::U8 => "|u1",
        DType::U16 => "<u2",
        DType::U32 => "<u4",
        DType::U64 => "<u8",
        DType::Bool => "|b1",
        _ => return None,
    })
}

/// Encode a tensor as a version 1.0 `.npy` file. A dtype NumPy has no standard type for
/// (bfloat16, the 8-, 4- and 2-bit types) is written as f32, which holds its values exactly.
pub fn write(t: &Tensor) -> Vec<u8> {
    if descr(t.dtype()).is_none() {
        return write(&Tensor::from_f64(
            DType::F32,
            t.shape().clone(),
            &t.to_f64_vec(),
        ));
    }
    let shape = match t.dims() {
        [] => "()".to_string(),
        [d] => format!("({d},)"),
        ds => format!(
            "({})",
            ds.iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header = format!(
        "{{'descr': '{}', 'fortran_order': False, 'shape': {shape}, }}",
        descr(t.dtype()).unwrap_or("<f4")
    );
    // Magic (6) + version (2) + length (2) + header + newline, padded to 64 bytes.
    let total = (10 + header.len() + 1).div_ceil(64) * 64;
    while 10 + header.len() + 1 < total {
        header.push(' ');
    }
    header.push('\n');
    let mut out = Vec::with_capacity(total + t.numel() * t.dtype().size_bytes());
    out.extend(MAGIC);
    out.extend([1, 0]);
    out.extend((header.len() as u16).to_le_bytes());
    out.extend(header.as_bytes());
    out.extend(t.to_le_bytes());
    out
}

/// Decode a `.npy` file.
pub fn read(b: &[u8]) -> Result<Tensor, String> {
    if b.len() < 10 || &b[..6] != MAGIC {
        return Err("not a .npy file (bad magic)".into());
    }
    let (hlen, start): (usize, usize) = match b[6] {
        1 => (u16::from_le_bytes([b[8], b[9]]) as usize, 10),
        2 | 3 if b.len() >= 12 => (u32::from_le_bytes([b[8], b[9], b[10], b[11]]) as usize, 12),
        v => return Err(format!("unsupported .npy version {v}")),
    };
    let header = b
        .get(start..start.saturating_add(hlen))
        .ok_or("truncated .npy header")?;
    let header = std::str::from_utf8(header).map_err(|_| "the .npy header is not text")?;
    let field = |key: &str| -> Option<&str> {
        let i = header.find(&format!("'{key}'"))? + key.len() + 2;
        let rest = header[i..].trim_start().strip_prefix(':')?.trim_start();
        Some(rest)
    };
    let d = field("descr").ok_or("no descr in the .npy header")?;
    let d = d.trim_start_matches('\'').split('\'').next().unwrap_or("");
    let d = match d {
        "<u1" => "|u1",
        "<i1" => "|i1",
        d => d,
    };
    let dtype = DType::ALL
        .into_iter()
        .find(|&t| descr(t) == Some(d))
        .ok_or_else(|| format!("unsupported .npy dtype '{d}'"))?;
    if field("fortran_order").is_some_and(|v| v.starts_with("True")) {
        return Err("Fortran-order .npy arrays are not supported".into());
    }
    let s = field("shape").ok_or("no shape in the .npy header")?;
    let s = s.trim_start_matches('(');
    let s = &s[..s.find(')').ok_or("bad shape in the .npy header")?];
    let dims: Vec<usize> = s
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| {
            t.parse::<usize>()
                .map_err(|_| format!("bad dim '{t}' in the .npy header"))
        })
        .collect::<Result<_, _>>()?;
    let shape = Shape::new(dims);
    let n = shape.checked_numel().ok_or("the .npy shape overflows")?;
    let body = &b[start + hlen..];
    let size = dtype.size_bytes();
    if body.len() != n.checked_mul(size).ok_or("the .npy shape overflows")? {
        return Err(format!(
            "the .npy shape {shape} of {dtype} needs {} bytes, the file has {}",
            n * size,
            body.len()
        ));
    }
    Tensor::from_le_bytes(dtype, shape, body).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_dtype_and_refuses_garbage() {
        for (i, d) in DType::ALL.iter().enumerate() {
            for dims in [vec![], vec![3], vec![2, 3, 4]] {
                let t = Tensor::random(*d, dims.clone(), i as u64);
                let b = write(&t);
                assert_eq!(
                    b.iter().position(|&c| c == b'\n').map(|p| (p + 1) % 64),
                    Some(0)
                );
                let back = read(&b).unwrap();
                if descr(*d).is_some() {
                    assert_eq!(back, t, "{d} {dims:?}");
                } else {
                    // Written as f32, value for value.
                    assert_eq!(back.dtype(), DType::F32, "{d}");
                    let same = back
                        .to_f64_vec()
                        .iter()
                        .zip(t.to_f64_vec())
                        .all(|(a, b)| a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()));
                    assert!(same, "{d} {dims:?}");
                }
                assert!(read(&b[..b.len() - 1]).is_err() || t.numel() == 0);
            }
        }
        assert!(read(b"hello").is_err());
        assert!(read(b"\x93NUMPY\x01\x00\xff\xff").is_err());
    }
}
