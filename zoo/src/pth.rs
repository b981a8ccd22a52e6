//! PyTorch `.pth` / `.pt` state dicts read from Rust, in both of PyTorch's formats:
//!
//! - the zip format (PyTorch 1.6 and later): `archive/data.pkl` plus one file per storage;
//! - the legacy format (before 1.6, still what many published checkpoints are): five pickles
//!   in a row (a magic number, the protocol version, system info, the object, the list of
//!   storage keys) followed by each storage as an 8-byte element count and its raw bytes.
//!
//! The pickles are read with candle's pickle reader (`candle_core::pickle::Stack`, which
//! resolves PyTorch's persistent storage references and `_rebuild_tensor_v2`), not a
//! hand-written unpickler; this module only walks the container and copies each tensor's
//! elements out of its storage (any strides, any storage offset).

use crate::weights::WeightsError;
use candle_core::pickle::{Object, Stack, TensorInfo};
use sfumato_core::{Tensor, TensorData};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Seek};
use std::path::Path;

/// The first pickle of a legacy `torch.save` file, byte for byte: protocol 2, the magic number
/// 0x1950a86a20f9469cfc6c as a 10-byte LONG1, STOP. (Compared as bytes: the number is wider
/// than the pickle reader's integers.)
const LEGACY_MAGIC: [u8; 15] = [
    0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, 0x2e,
];

fn err(path: &Path, msg: impl std::fmt::Display) -> WeightsError {
    WeightsError::File {
        path: path.display().to_string(),
        msg: msg.to_string(),
    }
}

/// A `.pth` file's tensors by name (f32, f16 and bf16 keep their dtype; f64 becomes f32;
/// integer tensors become i64). `key` picks a nested state dict (`"state_dict"`, `"model"`)
/// where the file holds a dict of several things; without it, such a dict's own `state_dict`
/// or `model` entry is used when the top level holds no tensors.
pub fn load_pth(path: &Path, key: Option<&str>) -> Result<BTreeMap<String, Tensor>, WeightsError> {
    let mut file = std::fs::File::open(path).map_err(|e| err(path, e))?;
    let mut magic = [0u8; 4];
    file.read_exact(&mut magic)
        .map_err(|e| err(path, format!("too short to be a .pth file ({e})")))?;
    file.rewind().map_err(|e| err(path, e))?;
    if &magic == b"PK\x03\x04" {
        load_zip(path, file, key)
    } else {
        load_legacy(path, file, key)
    }
}

/// Read one pickle from `r` (up to its STOP opcode).
/// A corrupt file must give an error, never a panic, so a panic inside the reader (an integer
/// overflow on a malformed opcode) becomes one too.
fn read_pickle<R: BufRead>(r: &mut R, path: &Path, what: &str) -> Result<Object, WeightsError> {
    let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut stack = Stack::empty();
        stack.read_loop(r)?;
        stack.finalize()
    }));
    match read {
        Ok(Ok(obj)) => Ok(obj),
        Ok(Err(e)) => Err(err(path, format!("reading the {what} pickle: {e}"))),
        Err(_) => Err(err(
            path,
            format!("reading the {what} pickle: malformed pickle data"),
        )),
    }
}

/// The state dict's `(name, rebuild object)` pairs, unwrapping an `OrderedDict` with
/// attributes (a `Build`), and a nested dict picked by `key`.
fn state_dict(
    obj: Object,
    key: Option<&str>,
    path: &Path,
) -> Result<Vec<(Object, Object)>, WeightsError> {
    let obj = match obj {
        Object::Build { callable, .. } => *callable,
        o => o,
    };
    let Object::Dict(items) = obj else {
        return Err(err(path, "the file's object is not a dict of tensors (a whole pickled module is not supported: save its state_dict())"));
    };
    let wanted: Vec<&str> = match key {
        Some(k) => vec![k],
        None => {
            let has_tensor = items.iter().any(|(_, v)| is_tensor(v));
            if has_tensor {
                return Ok(items);
            }
            vec!["state_dict", "model"]
        }
    };
    for k in wanted {
        if let Some((_, v)) = items
            .iter()
            .find(|(name, _)| *name == Object::Unicode(k.to_string()))
        {
            return state_dict(v.clone(), None, path);
        }
    }
    Err(err(
        path,
        format!(
            "no state dict{} in the file",
            key.map(|k| format!(" under '{k}'")).unwrap_or_default()
        ),
    ))
}

fn is_tensor(o: &Object) -> bool {
    matches!(o, Object::Reduce { callable, .. } if matches!(&**callable, Object::Class { class_name, .. } if class_name.starts_with("_rebuild")))
}

/// Tensor infos of a state dict (storages named by their keys).
fn infos(items: Vec<(Object, Object)>, path: &Path) -> Result<Vec<TensorInfo>, WeightsError> {
    let mut out = Vec::new();
    for (name, value) in items {
        let shown = format!("{name:?}");
        match value.into_tensor_info(name, Path::new("")) {
            Ok(Some(info)) => out.push(info),
            // Not a tensor (a counter stored as a plain int, metadata): not a weight.
            Ok(None) => {}
            Err(e) => return Err(err(path, format!("entry {shown}: {e}"))),
        }
    }
    Ok(out)
}

/// Bytes per element of a candle dtype, and whether it is one Sfumato loads.
fn elem_size(d: candle_core::DType) -> usize {
    d.size_in_bytes()
}

/// The tensor's elements from its storage bytes (`storage`), following its layout.
fn tensor_from_storage(
    info: &TensorInfo,
    storage: &[u8],
    path: &Path,
) -> Result<Tensor, WeightsError> {
    let es = elem_size(info.dtype);
    let dims = info.layout.dims().to_vec();
    let strides = info.layout.stride().to_vec();
    let start = info.layout.start_offset() / es;
    let numel: usize = dims.iter().product();
    let avail = storage.len() / es;
    // The furthest element the view reaches must be inside the storage.
    let last = start
        + dims
            .iter()
            .zip(&strides)
            .map(|(&d, &s)| d.saturating_sub(1) * s)
            .sum::<usize>();
    if numel > 0 && last >= avail {
        return Err(err(
            path,
            format!(
                "tensor '{}' reaches element {last} of a storage of {avail} (truncated file?)",
                info.name
            ),
        ));
    }
    // Element indices in row-major order of the view.
    let mut idx = Vec::with_capacity(numel);
    if numel > 0 {
        let mut pos = vec![0usize; dims.len()];
        loop {
            idx.push(start + pos.iter().zip(&strides).map(|(p, s)| p * s).sum::<usize>());
            let mut d = dims.len();
            loop {
                if d == 0 {
                    break;
                }
                d -= 1;
                pos[d] += 1;
                if pos[d] < dims[d] {
                    break;
                }
                pos[d] = 0;
            }
            if pos.iter().all(|&p| p == 0) {
                break;
            }
        }
    }
    let at = |i: usize| &storage[i * es..(i + 1) * es];
    use candle_core::DType as C;
    let data = match info.dtype {
        C::F32 => TensorData::F32(
            idx.iter()
                .map(|&i| f32::from_le_bytes(at(i).try_into().unwrap_or([0; 4])))
                .collect(),
        ),
        C::F64 => TensorData::F32(
            idx.iter()
                .map(|&i| f64::from_le_bytes(at(i).try_into().unwrap_or([0; 8])) as f32)
                .collect(),
        ),
        C::F16 => TensorData::F16(
            idx.iter()
                .map(|&i| half::f16::from_le_bytes(at(i).try_into().unwrap_or([0; 2])))
                .collect(),
        ),
        C::BF16 => TensorData::BF16(
            idx.iter()
                .map(|&i| half::bf16::from_le_bytes(at(i).try_into().unwrap_or([0; 2])))
                .collect(),
        ),
        C::I64 => TensorData::I64(
            idx.iter()
                .map(|&i| i64::from_le_bytes(at(i).try_into().unwrap_or([0; 8])))
                .collect(),
        ),
        C::U8 => TensorData::I64(idx.iter().map(|&i| storage[i] as i64).collect()),
        other => {
            return Err(WeightsError::Dtype {
                path: path.display().to_string(),
                name: info.name.clone(),
                dtype: format!("{other:?}"),
            })
        }
    };
    Tensor::new(dims, data).map_err(|e| err(path, format!("tensor '{}': {e}", info.name)))
}

fn load_legacy(
    path: &Path,
    file: std::fs::File,
    key: Option<&str>,
) -> Result<BTreeMap<String, Tensor>, WeightsError> {
    let mut r = BufReader::new(file);
    let mut magic = [0u8; LEGACY_MAGIC.len()];
    if r.read_exact(&mut magic).is_err() || magic != LEGACY_MAGIC {
        return Err(err(
            path,
            "not a PyTorch file (neither a zip archive nor a legacy torch.save stream)",
        ));
    }
    let _protocol = read_pickle(&mut r, path, "protocol version")?;
    let _sys_info = read_pickle(&mut r, path, "system info")?;
    let obj = read_pickle(&mut r, path, "state dict")?;
    let keys = read_pickle(&mut r, path, "storage keys")?;
    let keys: Vec<String> = match keys {
        Object::List(v) | Object::Tuple(v) => v
            .into_iter()
            .map(|k| {
                k.unicode()
                    .map_err(|o| err(path, format!("a storage key is {o:?}")))
            })
            .collect::<Result<_, _>>()?,
        o => return Err(err(path, format!("the storage keys are {o:?}, not a list"))),
    };
    let infos = infos(state_dict(obj, key, path)?, path)?;
    // Storages follow in the order of the keys: an 8-byte element count, then the elements.
    let mut by_key: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for k in &keys {
        let es = infos
            .iter()
            .find(|i| i.path.trim_start_matches('/') == k)
            .map(|i| elem_size(i.dtype))
            .ok_or_else(|| err(path, format!("storage '{k}' is used by no tensor")))?;
        let mut n = [0u8; 8];
        r.read_exact(&mut n)
            .map_err(|e| err(path, format!("storage '{k}': {e} (truncated file?)")))?;
        let n = u64::from_le_bytes(n) as usize;
        let len = n
            .checked_mul(es)
            .filter(|&l| l < (1usize << 40))
            .ok_or_else(|| err(path, format!("storage '{k}' claims {n} elements")))?;
        let mut buf = vec![0u8; len];
        r.read_exact(&mut buf).map_err(|e| {
            err(
                path,
                format!("storage '{k}' of {len} bytes: {e} (truncated file?)"),
            )
        })?;
        by_key.insert(k.clone(), buf);
    }
    let mut out = BTreeMap::new();
    for info in &infos {
        let k = info.path.trim_start_matches('/');
        let storage = by_key.get(k).ok_or_else(|| {
            err(
                path,
                format!(
                    "tensor '{}' uses storage '{k}', which the file lacks",
                    info.name
                ),
            )
        })?;
        out.insert(info.name.clone(), tensor_from_storage(info, storage, path)?);
    }
    Ok(out)
}

fn load_zip(
    path: &Path,
    file: std::fs::File,
    key: Option<&str>,
) -> Result<BTreeMap<String, Tensor>, WeightsError> {
    let mut zip = zip::ZipArchive::new(BufReader::new(file))
        .map_err(|e| err(path, format!("not a readable zip archive: {e}")))?;
    let pkl = (0..zip.len())
        .filter_map(|i| zip.by_index(i).ok().map(|f| f.name().to_string()))
        .find(|n| n.ends_with("data.pkl"))
        .ok_or_else(|| err(path, "a zip archive without data.pkl: not a PyTorch file"))?;
    let dir = pkl.trim_end_matches(".pkl").to_string();
    let obj = {
        let f = zip.by_name(&pkl).map_err(|e| err(path, e))?;
        read_pickle(&mut BufReader::new(f), path, "state dict")?
    };
    let infos = infos(state_dict(obj, key, path)?, path)?;
    let mut out = BTreeMap::new();
    let mut cache: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for info in &infos {
        let k = info.path.trim_start_matches('/').to_string();
        if !cache.contains_key(&k) {
            let name = format!("{dir}/{k}");
            let mut f = zip
                .by_name(&name)
                .map_err(|e| err(path, format!("storage {name}: {e}")))?;
            let mut buf = Vec::new();
            f.read_to_end(&mut buf)
                .map_err(|e| err(path, format!("storage {name}: {e}")))?;
            cache.insert(k.clone(), buf);
        }
        out.insert(
            info.name.clone(),
            tensor_from_storage(info, &cache[&k], path)?,
        );
    }
    Ok(out)
}
