//! Kept tensors ([`sfumato_core::kept`]): buffers of this device's own, outside the pool, that
//! runs bind in place of an upload and write outputs back into with copy commands, so a KV
//! cache never goes through the host.

use crate::memory::binding_size;
use crate::{convert, WgpuDevice};
use sfumato_core::{Error, Kept, Result, Tensor};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Ids that tell devices apart, so a tensor kept by one is refused by another.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

pub(crate) fn next_id() -> u64 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

/// A kept tensor's buffer; its bytes count in the device's kept total until it is dropped.
pub(crate) struct KeptBuf {
    pub(crate) buf: Arc<wgpu::Buffer>,
    bytes: u64,
    total: Arc<AtomicU64>,
}

impl Drop for KeptBuf {
    fn drop(&mut self) {
        self.total.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

impl WgpuDevice {
    /// Upload `t` into a buffer of its own ([`sfumato_core::Device::keep`]).
    pub(crate) fn keep_tensor(&mut self, t: Tensor) -> Result<Kept> {
        let bytes = convert::to_device_bytes(&t, "a kept tensor")?;
        let size = binding_size(bytes.len() as u64);
        let max = self.limits.max_storage_buffer_binding_size;
        if size > max {
            return Err(Error::Device(format!(
                "a kept tensor {} {} takes {size} bytes, over this adapter's {max}-byte storage binding",
                t.dtype(),
                t.shape()
            )));
        }
        let buf = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("sfumato kept"),
            size,
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::UNIFORM
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        if !bytes.is_empty() {
            self.queue.write_buffer(&buf, 0, &bytes);
        }
        self.kept_bytes.fetch_add(size, Ordering::Relaxed);
        let handle = KeptBuf {
            buf: Arc::new(buf),
            bytes: size,
            total: Arc::clone(&self.kept_bytes),
        };
        Ok(Kept::on_device(
            t.dtype(),
            t.shape().clone(),
            self.id,
            Box::new(handle),
        ))
    }

    /// The buffer of a tensor this device keeps; `what` names the use in the error otherwise.
    pub(crate) fn kept_buffer(&self, k: &Kept, what: &str) -> Result<Arc<wgpu::Buffer>> {
        Ok(Arc::clone(&k.handle::<KeptBuf>(self.id, what)?.buf))
    }

    /// Bytes of kept tensors alive now.
    pub fn kept_bytes(&self) -> u64 {
        self.kept_bytes.load(Ordering::Relaxed)
    }

    /// A kept tensor's contents, awaited (the browser's way; natively
    /// [`sfumato_core::Device::read_kept`] blocks on it).
    pub async fn read_kept_async(&mut self, k: &Kept) -> Result<Tensor> {
        let src = self.kept_buffer(k, "reading a kept tensor")?;
        let bytes = k.shape().numel() as u64 * 4;
        if bytes == 0 {
            return Ok(Tensor::zeros(k.dtype(), k.shape().clone()));
        }
        let dst = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("sfumato kept readback"),
            size: bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut enc = self.device.create_command_encoder(&Default::default());
        enc.copy_buffer_to_buffer(&src, 0, &dst, 0, bytes);
        self.submit_commands(enc.finish());
        let maps = Arc::new(Mutex::new(crate::run::MapState::default()));
        crate::run::map_read(&maps, &dst);
        crate::run::MapWait {
            device: &self.device,
            maps: maps.clone(),
        }
        .await;
        if let Some(e) = maps
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .errors
            .first()
        {
            return Err(Error::Device(format!("reading a kept tensor back: {e}")));
        }
        let view = dst
            .slice(..)
            .get_mapped_range()
            .map_err(|e| Error::Device(format!("mapping: {e:?}")))?;
        convert::from_device_bytes(k.dtype(), k.shape(), &view)
    }
}
