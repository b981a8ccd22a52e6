//! The protocol's gRPC API (tonic): `inference.GRPCInferenceService` with its health,
//! metadata, inference and repository methods. Inputs come as typed contents or as
//! `raw_input_contents` (what Triton's client sends); outputs go back as
//! `raw_output_contents`, as Triton's do.

use crate::config::config_data_type;
use crate::protocol::{self, InferRequest, InputTensor, RequestedOutput};
use crate::{ServeError, Server};
use sfumato_core::DType;
use std::collections::HashMap;
use std::sync::Arc;
use tonic::{Request, Response, Status};
use tracing::Instrument;

/// The messages of grpc_service.proto that the service uses, with the .proto's field numbers.
#[allow(missing_docs, clippy::derive_partial_eq_without_eq)]
pub mod pb {
    use std::collections::HashMap;

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ServerLiveRequest {}
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ServerLiveResponse {
        #[prost(bool, tag = "1")]
        pub live: bool,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ServerReadyRequest {}
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ServerReadyResponse {
        #[prost(bool, tag = "1")]
        pub ready: bool,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ModelReadyRequest {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(string, tag = "2")]
        pub version: String,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ModelReadyResponse {
        #[prost(bool, tag = "1")]
        pub ready: bool,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ServerMetadataRequest {}
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ServerMetadataResponse {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(string, tag = "2")]
        pub version: String,
        #[prost(string, repeated, tag = "3")]
        pub extensions: Vec<String>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ModelMetadataRequest {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(string, tag = "2")]
        pub version: String,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TensorMetadata {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(string, tag = "2")]
        pub datatype: String,
        #[prost(int64, repeated, tag = "3")]
        pub shape: Vec<i64>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ModelMetadataResponse {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(string, repeated, tag = "2")]
        pub versions: Vec<String>,
        #[prost(string, tag = "3")]
        pub platform: String,
        #[prost(message, repeated, tag = "4")]
        pub inputs: Vec<TensorMetadata>,
        #[prost(message, repeated, tag = "5")]
        pub outputs: Vec<TensorMetadata>,
    }
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum ParameterChoice {
        #[prost(bool, tag = "1")]
        BoolParam(bool),
        #[prost(int64, tag = "2")]
        Int64Param(i64),
        #[prost(string, tag = "3")]
        StringParam(String),
        #[prost(double, tag = "4")]
        DoubleParam(f64),
        #[prost(uint64, tag = "5")]
        Uint64Param(u64),
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct InferParameter {
        #[prost(oneof = "ParameterChoice", tags = "1, 2, 3, 4, 5")]
        pub parameter_choice: Option<ParameterChoice>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct InferTensorContents {
        #[prost(bool, repeated, tag = "1")]
        pub bool_contents: Vec<bool>,
        #[prost(int32, repeated, tag = "2")]
        pub int_contents: Vec<i32>,
        #[prost(int64, repeated, tag = "3")]
        pub int64_contents: Vec<i64>,
        #[prost(uint32, repeated, tag = "4")]
        pub uint_contents: Vec<u32>,
        #[prost(uint64, repeated, tag = "5")]
        pub uint64_contents: Vec<u64>,
        #[prost(float, repeated, tag = "6")]
        pub fp32_contents: Vec<f32>,
        #[prost(double, repeated, tag = "7")]
        pub fp64_contents: Vec<f64>,
        #[prost(bytes = "vec", repeated, tag = "8")]
        pub bytes_contents: Vec<Vec<u8>>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct InferInputTensor {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(string, tag = "2")]
        pub datatype: String,
        #[prost(int64, repeated, tag = "3")]
        pub shape: Vec<i64>,
        #[prost(map = "string, message", tag = "4")]
        pub parameters: HashMap<String, InferParameter>,
        #[prost(message, optional, tag = "5")]
        pub contents: Option<InferTensorContents>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct InferRequestedOutputTensor {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(map = "string, message", tag = "2")]
        pub parameters: HashMap<String, InferParameter>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ModelInferRequest {
        #[prost(string, tag = "1")]
        pub model_name: String,
        #[prost(string, tag = "2")]
        pub model_version: String,
        #[prost(string, tag = "3")]
        pub id: String,
        #[prost(map = "string, message", tag = "4")]
        pub parameters: HashMap<String, InferParameter>,
        #[prost(message, repeated, tag = "5")]
        pub inputs: Vec<InferInputTensor>,
        #[prost(message, repeated, tag = "6")]
        pub outputs: Vec<InferRequestedOutputTensor>,
        #[prost(bytes = "vec", repeated, tag = "7")]
        pub raw_input_contents: Vec<Vec<u8>>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct InferOutputTensor {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(string, tag = "2")]
        pub datatype: String,
        #[prost(int64, repeated, tag = "3")]
        pub shape: Vec<i64>,
        #[prost(map = "string, message", tag = "4")]
        pub parameters: HashMap<String, InferParameter>,
        #[prost(message, optional, tag = "5")]
        pub contents: Option<InferTensorContents>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ModelInferResponse {
        #[prost(string, tag = "1")]
        pub model_name: String,
        #[prost(string, tag = "2")]
        pub model_version: String,
        #[prost(string, tag = "3")]
        pub id: String,
        #[prost(map = "string, message", tag = "4")]
        pub parameters: HashMap<String, InferParameter>,
        #[prost(message, repeated, tag = "5")]
        pub outputs: Vec<InferOutputTensor>,
        #[prost(bytes = "vec", repeated, tag = "6")]
        pub raw_output_contents: Vec<Vec<u8>>,
    }
    /// One answer on `ModelStreamInfer`'s stream: a response, or an error for one request
    /// (the stream stays open).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ModelStreamInferResponse {
        #[prost(string, tag = "1")]
        pub error_message: String,
        #[prost(message, optional, tag = "2")]
        pub infer_response: Option<ModelInferResponse>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct RepositoryIndexRequest {
        #[prost(string, tag = "1")]
        pub repository_name: String,
        #[prost(bool, tag = "2")]
        pub ready: bool,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ModelIndex {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(string, tag = "2")]
        pub version: String,
        #[prost(string, tag = "3")]
        pub state: String,
        #[prost(string, tag = "4")]
        pub reason: String,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct RepositoryIndexResponse {
        #[prost(message, repeated, tag = "1")]
        pub models: Vec<ModelIndex>,
    }
    /// The load/unload requests' parameters (config overrides) are not read; prost skips
    /// their field.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct RepositoryModelLoadRequest {
        #[prost(string, tag = "1")]
        pub repository_name: String,
        #[prost(string, tag = "2")]
        pub model_name: String,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct RepositoryModelLoadResponse {}
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct RepositoryModelUnloadRequest {
        #[prost(string, tag = "1")]
        pub repository_name: String,
        #[prost(string, tag = "2")]
        pub model_name: String,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct RepositoryModelUnloadResponse {}
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ModelConfigRequest {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(string, tag = "2")]
        pub version: String,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ModelConfigResponse {
        #[prost(message, optional, tag = "1")]
        pub config: Option<ModelConfig>,
    }
    /// The part of model_config.proto's `ModelConfig` that a sfumato model has.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ModelConfig {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(string, tag = "2")]
        pub platform: String,
        #[prost(int32, tag = "4")]
        pub max_batch_size: i32,
        #[prost(message, repeated, tag = "5")]
        pub input: Vec<ModelInput>,
        #[prost(message, repeated, tag = "6")]
        pub output: Vec<ModelOutput>,
        #[prost(message, repeated, tag = "7")]
        pub instance_group: Vec<ModelInstanceGroup>,
        #[prost(string, tag = "8")]
        pub default_model_filename: String,
        #[prost(message, optional, tag = "11")]
        pub dynamic_batching: Option<ModelDynamicBatching>,
        #[prost(map = "string, message", tag = "14")]
        pub parameters: HashMap<String, ModelParameter>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ModelInput {
        #[prost(string, tag = "1")]
        pub name: String,
        /// `DataType` (TYPE_FP32 = 11, ...).
        #[prost(int32, tag = "2")]
        pub data_type: i32,
        #[prost(int64, repeated, tag = "4")]
        pub dims: Vec<i64>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ModelOutput {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(int32, tag = "2")]
        pub data_type: i32,
        #[prost(int64, repeated, tag = "3")]
        pub dims: Vec<i64>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ModelInstanceGroup {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(int32, tag = "2")]
        pub count: i32,
        /// `Kind`: KIND_GPU = 1, KIND_CPU = 2.
        #[prost(int32, tag = "4")]
        pub kind: i32,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ModelDynamicBatching {
        #[prost(int32, repeated, tag = "1")]
        pub preferred_batch_size: Vec<i32>,
        #[prost(uint64, tag = "2")]
        pub max_queue_delay_microseconds: u64,
        #[prost(message, optional, tag = "6")]
        pub default_queue_policy: Option<ModelQueuePolicy>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ModelQueuePolicy {
        #[prost(uint64, tag = "2")]
        pub default_timeout_microseconds: u64,
        #[prost(uint32, tag = "4")]
        pub max_queue_size: u32,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ModelParameter {
        #[prost(string, tag = "1")]
        pub string_value: String,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ModelStatisticsRequest {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(string, tag = "2")]
        pub version: String,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ModelStatisticsResponse {
        #[prost(message, repeated, tag = "1")]
        pub model_stats: Vec<ModelStatistics>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ModelStatistics {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(string, tag = "2")]
        pub version: String,
        #[prost(uint64, tag = "3")]
        pub last_inference: u64,
        #[prost(uint64, tag = "4")]
        pub inference_count: u64,
        #[prost(uint64, tag = "5")]
        pub execution_count: u64,
        #[prost(message, optional, tag = "6")]
        pub inference_stats: Option<InferStatistics>,
        #[prost(message, repeated, tag = "7")]
        pub batch_stats: Vec<InferBatchStatistics>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct StatisticDuration {
        #[prost(uint64, tag = "1")]
        pub count: u64,
        #[prost(uint64, tag = "2")]
        pub ns: u64,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct InferStatistics {
        #[prost(message, optional, tag = "1")]
        pub success: Option<StatisticDuration>,
        #[prost(message, optional, tag = "2")]
        pub fail: Option<StatisticDuration>,
        #[prost(message, optional, tag = "3")]
        pub queue: Option<StatisticDuration>,
        #[prost(message, optional, tag = "4")]
        pub compute_input: Option<StatisticDuration>,
        #[prost(message, optional, tag = "5")]
        pub compute_infer: Option<StatisticDuration>,
        #[prost(message, optional, tag = "6")]
        pub compute_output: Option<StatisticDuration>,
        #[prost(message, optional, tag = "7")]
        pub cache_hit: Option<StatisticDuration>,
        #[prost(message, optional, tag = "8")]
        pub cache_miss: Option<StatisticDuration>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct InferBatchStatistics {
        #[prost(uint64, tag = "1")]
        pub batch_size: u64,
        #[prost(message, optional, tag = "2")]
        pub compute_input: Option<StatisticDuration>,
        #[prost(message, optional, tag = "3")]
        pub compute_infer: Option<StatisticDuration>,
        #[prost(message, optional, tag = "4")]
        pub compute_output: Option<StatisticDuration>,
    }

    /// The service's server half, generated by build.rs (tonic-build's manual builder).
    #[allow(clippy::all, clippy::pedantic, missing_docs, non_camel_case_types)]
    pub mod service {
        include!(concat!(
            env!("OUT_DIR"),
            "/inference.GRPCInferenceService.rs"
        ));
    }
}

use pb::service::g_r_p_c_inference_service_server::{
    GRPCInferenceService, GRPCInferenceServiceServer,
};

struct Service {
    server: Arc<Server>,
    /// True once shutdown begins: open streams stop taking requests and end once answered.
    stop: tokio::sync::watch::Receiver<bool>,
}

impl Service {
    fn check<T>(&self, req: &Request<T>) -> Result<(), Status> {
        let given = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        if self.server.authorized(given) {
            Ok(())
        } else {
            Err(ServeError::unauthorized(
                "a valid 'authorization: Bearer <token>' metadata entry is required",
            )
            .into())
        }
    }
}

fn param_bool(p: &HashMap<String, pb::InferParameter>, key: &str) -> Option<bool> {
    match p.get(key)?.parameter_choice {
        Some(pb::ParameterChoice::BoolParam(b)) => Some(b),
        _ => None,
    }
}

fn param_u64(p: &HashMap<String, pb::InferParameter>, key: &str) -> Option<u64> {
    match p.get(key)?.parameter_choice {
        Some(pb::ParameterChoice::Int64Param(v)) => u64::try_from(v).ok(),
        Some(pb::ParameterChoice::Uint64Param(v)) => Some(v),
        _ => None,
    }
}

/// The typed contents of one input, as little-endian bytes of its dtype.
fn contents_bytes(
    name: &str,
    dtype: DType,
    c: &pb::InferTensorContents,
) -> Result<Vec<u8>, ServeError> {
    let mut out = Vec::new();
    let wrong = |field: &str| {
        ServeError::bad_request(format!(
            "input '{name}': {field} do not fit its datatype {}",
            crate::config::protocol_dtype(dtype).unwrap_or("?")
        ))
    };
    match dtype {
        DType::Bool => out.extend(c.bool_contents.iter().map(|&b| b as u8)),
        DType::F32 => c
            .fp32_contents
            .iter()
            .for_each(|x| out.extend(x.to_le_bytes())),
        DType::F64 => c
            .fp64_contents
            .iter()
            .for_each(|x| out.extend(x.to_le_bytes())),
        DType::I64 => c
            .int64_contents
            .iter()
            .for_each(|x| out.extend(x.to_le_bytes())),
        DType::U64 => c
            .uint64_contents
            .iter()
            .for_each(|x| out.extend(x.to_le_bytes())),
        DType::I32 => c
            .int_contents
            .iter()
            .for_each(|x| out.extend(x.to_le_bytes())),
        DType::U32 => c
            .uint_contents
            .iter()
            .for_each(|x| out.extend(x.to_le_bytes())),
        DType::I16 => {
            for &x in &c.int_contents {
                out.extend(
                    i16::try_from(x)
                        .map_err(|_| wrong("int_contents"))?
                        .to_le_bytes(),
                )
            }
        }
        DType::I8 => {
            for &x in &c.int_contents {
                out.extend(
                    i8::try_from(x)
                        .map_err(|_| wrong("int_contents"))?
                        .to_le_bytes(),
                )
            }
        }
        DType::U16 => {
            for &x in &c.uint_contents {
                out.extend(
                    u16::try_from(x)
                        .map_err(|_| wrong("uint_contents"))?
                        .to_le_bytes(),
                )
            }
        }
        DType::U8 => {
            for &x in &c.uint_contents {
                out.push(u8::try_from(x).map_err(|_| wrong("uint_contents"))?)
            }
        }
        _ => {
            return Err(ServeError::bad_request(format!(
                "input '{name}': FP16 and BF16 inputs must come as raw_input_contents"
            )))
        }
    }
    Ok(out)
}

/// Decode a ModelInferRequest; every size is checked before a tensor is allocated.
pub fn decode(
    r: pb::ModelInferRequest,
    limits: &protocol::Limits,
) -> Result<InferRequest, ServeError> {
    let raw = !r.raw_input_contents.is_empty();
    if raw && r.raw_input_contents.len() != r.inputs.len() {
        return Err(ServeError::bad_request(format!(
            "{} raw_input_contents for {} inputs: give raw contents for every input or for none",
            r.raw_input_contents.len(),
            r.inputs.len()
        )));
    }
    let mut inputs = Vec::with_capacity(r.inputs.len());
    let mut raw_contents = r.raw_input_contents.into_iter();
    for i in r.inputs {
        let (dtype, dims, _) = protocol::check_tensor(&i.name, &i.datatype, &i.shape, limits)?;
        let tensor = if raw {
            if i.contents.is_some() {
                return Err(ServeError::bad_request(format!(
                    "input '{}' has both contents and raw_input_contents",
                    i.name
                )));
            }
            let bytes = raw_contents.next().unwrap_or_default();
            protocol::tensor_from_bytes(&i.name, dtype, dims, &bytes)?
        } else {
            let c = i.contents.as_ref().ok_or_else(|| {
                ServeError::bad_request(format!("input '{}' has no contents", i.name))
            })?;
            protocol::tensor_from_bytes(&i.name, dtype, dims, &contents_bytes(&i.name, dtype, c)?)?
        };
        inputs.push(InputTensor {
            name: i.name,
            tensor,
        });
    }
    let outputs = (!r.outputs.is_empty()).then(|| {
        r.outputs
            .into_iter()
            .map(|o| RequestedOutput {
                name: o.name,
                binary: true,
            })
            .collect()
    });
    Ok(InferRequest {
        model: r.model_name,
        version: given(&r.model_version).map(str::to_string),
        id: r.id,
        inputs,
        outputs,
        binary_output: param_bool(&r.parameters, "binary_data_output").unwrap_or(true),
        timeout: param_u64(&r.parameters, "timeout").map(std::time::Duration::from_micros),
    })
}

fn metadata_of(t: &crate::model::TensorMeta) -> pb::TensorMetadata {
    pb::TensorMetadata {
        name: t.name.clone(),
        datatype: t.datatype().into(),
        shape: t.shape.clone(),
    }
}

#[tonic::async_trait]
impl GRPCInferenceService for Service {
    async fn server_live(
        &self,
        r: Request<pb::ServerLiveRequest>,
    ) -> Result<Response<pb::ServerLiveResponse>, Status> {
        self.check(&r)?;
        Ok(Response::new(pb::ServerLiveResponse {
            live: self.server.live(),
        }))
    }

    async fn server_ready(
        &self,
        r: Request<pb::ServerReadyRequest>,
    ) -> Result<Response<pb::ServerReadyResponse>, Status> {
        self.check(&r)?;
        Ok(Response::new(pb::ServerReadyResponse {
            ready: self.server.ready(),
        }))
    }

    async fn model_ready(
        &self,
        r: Request<pb::ModelReadyRequest>,
    ) -> Result<Response<pb::ModelReadyResponse>, Status> {
        self.check(&r)?;
        let r = r.into_inner();
        let version = given(&r.version);
        Ok(Response::new(pb::ModelReadyResponse {
            ready: self.server.repo.get(&r.name, version).is_ok(),
        }))
    }

    async fn server_metadata(
        &self,
        r: Request<pb::ServerMetadataRequest>,
    ) -> Result<Response<pb::ServerMetadataResponse>, Status> {
        self.check(&r)?;
        Ok(Response::new(pb::ServerMetadataResponse {
            name: "sfumato".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            extensions: crate::EXTENSIONS.iter().map(|s| s.to_string()).collect(),
        }))
    }

    async fn model_metadata(
        &self,
        r: Request<pb::ModelMetadataRequest>,
    ) -> Result<Response<pb::ModelMetadataResponse>, Status> {
        self.check(&r)?;
        let r = r.into_inner();
        let version = given(&r.version);
        let m = self.server.repo.get(&r.name, version)?;
        let c = &m.core;
        Ok(Response::new(pb::ModelMetadataResponse {
            name: c.config.name.clone(),
            versions: vec![c.version.clone()],
            platform: c.config.platform_name.clone(),
            inputs: c.inputs.iter().map(metadata_of).collect(),
            outputs: c.outputs.iter().map(metadata_of).collect(),
        }))
    }

    async fn model_infer(
        &self,
        r: Request<pb::ModelInferRequest>,
    ) -> Result<Response<pb::ModelInferResponse>, Status> {
        self.check(&r)?;
        Ok(Response::new(
            infer_one(&self.server, r.into_inner()).await?,
        ))
    }

    type ModelStreamInferStream = std::pin::Pin<
        Box<dyn tokio_stream::Stream<Item = Result<pb::ModelStreamInferResponse, Status>> + Send>,
    >;

    /// Triton's streaming extension: requests in, answers out as each finishes (in any
    /// order; each carries its request's id). A bad request is answered on the stream with its
    /// error and the stream goes on; the stream ends when the client closes its side and
    /// every answer is sent.
    async fn model_stream_infer(
        &self,
        r: Request<tonic::Streaming<pb::ModelInferRequest>>,
    ) -> Result<Response<Self::ModelStreamInferStream>, Status> {
        self.check(&r)?;
        let mut incoming = r.into_inner();
        // Each request in flight holds a slot of the answers' channel from before it is read
        // until its answer is taken by the client: at most STREAM_IN_FLIGHT at once, and past
        // that the stream is not read (HTTP/2 flow control holds the client back).
        let (tx, rx) = tokio::sync::mpsc::channel(STREAM_IN_FLIGHT);
        let (server, mut stop) = (self.server.clone(), self.stop.clone());
        tokio::spawn(async move {
            let mut running = tokio::task::JoinSet::new();
            loop {
                // Answered requests leave the set (a long stream does not pile them up).
                while running.try_join_next().is_some() {}
                // A client that went away: what it sent is no longer run.
                let Ok(slot) = tx.clone().reserve_owned().await else {
                    running.abort_all();
                    break;
                };
                let next = tokio::select! {
                    m = incoming.message() => m,
                    // Shutdown: read no more; the requests in flight are answered below.
                    _ = stop.wait_for(|s| *s) => break,
                };
                match next {
                    Ok(Some(req)) => {
                        let server = server.clone();
                        running.spawn(async move {
                            let who = pb::ModelInferResponse {
                                model_name: req.model_name.clone(),
                                model_version: req.model_version.clone(),
                                id: req.id.clone(),
                                ..Default::default()
                            };
                            let answer = match infer_one(&server, req).await {
                                Ok(resp) => pb::ModelStreamInferResponse {
                                    error_message: String::new(),
                                    infer_response: Some(resp),
                                },
                                Err(e) => pb::ModelStreamInferResponse {
                                    error_message: e.message().to_string(),
                                    infer_response: Some(who),
                                },
                            };
                            slot.send(Ok(answer));
                        });
                    }
                    // The client closed its side: answer what is in flight, then end.
                    Ok(None) => break,
                    Err(e) => {
                        slot.send(Err(e));
                        break;
                    }
                }
            }
            while running.join_next().await.is_some() {}
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn repository_index(
        &self,
        r: Request<pb::RepositoryIndexRequest>,
    ) -> Result<Response<pb::RepositoryIndexResponse>, Status> {
        self.check(&r)?;
        let r = r.into_inner();
        Ok(Response::new(pb::RepositoryIndexResponse {
            models: self
                .server
                .repo
                .index(r.ready)
                .into_iter()
                .map(|i| pb::ModelIndex {
                    name: i.name,
                    version: i.version,
                    state: i.state,
                    reason: i.reason,
                })
                .collect(),
        }))
    }

    async fn repository_model_load(
        &self,
        r: Request<pb::RepositoryModelLoadRequest>,
    ) -> Result<Response<pb::RepositoryModelLoadResponse>, Status> {
        self.check(&r)?;
        self.server.repo.load(&r.into_inner().model_name).await?;
        Ok(Response::new(pb::RepositoryModelLoadResponse {}))
    }

    async fn repository_model_unload(
        &self,
        r: Request<pb::RepositoryModelUnloadRequest>,
    ) -> Result<Response<pb::RepositoryModelUnloadResponse>, Status> {
        self.check(&r)?;
        self.server.repo.unload(&r.into_inner().model_name)?;
        Ok(Response::new(pb::RepositoryModelUnloadResponse {}))
    }

    async fn model_config(
        &self,
        r: Request<pb::ModelConfigRequest>,
    ) -> Result<Response<pb::ModelConfigResponse>, Status> {
        self.check(&r)?;
        let r = r.into_inner();
        let version = given(&r.version);
        let m = self.server.repo.get(&r.name, version)?;
        Ok(Response::new(pb::ModelConfigResponse {
            config: Some(config_of(&m)),
        }))
    }

    async fn model_statistics(
        &self,
        r: Request<pb::ModelStatisticsRequest>,
    ) -> Result<Response<pb::ModelStatisticsResponse>, Status> {
        self.check(&r)?;
        let r = r.into_inner();
        let name = given(&r.name);
        let version = given(&r.version);
        let stats = self.server.model_stats(name, version)?;
        Ok(Response::new(pb::ModelStatisticsResponse {
            model_stats: stats.into_iter().map(stats_of).collect(),
        }))
    }
}

/// A string field of a request as given: protobuf sends an unset one as "", which the
/// protocol reads as "any" (a model's latest version, every model).
fn given(field: &str) -> Option<&str> {
    (!field.is_empty()).then_some(field)
}

/// The requests of one `ModelStreamInfer` stream in flight at once, answers waiting to be sent
/// included.
const STREAM_IN_FLIGHT: usize = 64;

/// One inference over gRPC: the request decoded (limits checked), run, and its outputs as
/// `raw_output_contents` (as Triton answers).
async fn infer_one(
    server: &Arc<Server>,
    r: pb::ModelInferRequest,
) -> Result<pb::ModelInferResponse, Status> {
    let req = decode(r, &server.limits)?;
    let span = tracing::info_span!("infer", protocol = "grpc", model = %req.model, id = %req.id);
    let resp = server.infer(req).instrument(span).await?;
    let mut out = pb::ModelInferResponse {
        model_name: resp.model,
        model_version: resp.version,
        id: resp.id,
        ..Default::default()
    };
    for o in resp.outputs {
        out.outputs.push(pb::InferOutputTensor {
            name: o.name,
            datatype: protocol::datatype_of(&o.tensor).into(),
            shape: o.tensor.dims().iter().map(|&d| d as i64).collect(),
            ..Default::default()
        });
        out.raw_output_contents.push(o.tensor.to_le_bytes());
    }
    Ok(out)
}

/// Triton's model configuration of a loaded model, built here only: gRPC's `ModelConfig`, and
/// `GET …/config`'s JSON from it (`http::config_json`).
pub(crate) fn config_of(m: &crate::model::Model) -> pb::ModelConfig {
    let (core, c) = (&m.core, &m.core.config);
    pb::ModelConfig {
        name: c.name.clone(),
        platform: c.platform_name.clone(),
        max_batch_size: i32::try_from(c.max_batch_size).unwrap_or(i32::MAX),
        input: (core.inputs.iter())
            .map(|t| pb::ModelInput {
                name: t.name.clone(),
                data_type: config_data_type(t.dtype).1,
                dims: core.config_dims(t).to_vec(),
            })
            .collect(),
        output: (core.outputs.iter())
            .map(|t| pb::ModelOutput {
                name: t.name.clone(),
                data_type: config_data_type(t.dtype).1,
                dims: core.config_dims(t).to_vec(),
            })
            .collect(),
        instance_group: vec![pb::ModelInstanceGroup {
            name: c.name.clone(),
            count: i32::try_from(c.instance_count).unwrap_or(i32::MAX),
            kind: crate::config::config_instance_kind(c.device).1,
        }],
        default_model_filename: c.default_model_filename.clone(),
        dynamic_batching: c
            .dynamic_batching
            .as_ref()
            .map(|d| pb::ModelDynamicBatching {
                preferred_batch_size: (d.preferred.iter())
                    .map(|&p| i32::try_from(p).unwrap_or(i32::MAX))
                    .collect(),
                max_queue_delay_microseconds: d.max_queue_delay.as_micros() as u64,
                default_queue_policy: Some(pb::ModelQueuePolicy {
                    default_timeout_microseconds: c
                        .default_timeout
                        .map_or(0, |t| t.as_micros() as u64),
                    max_queue_size: u32::try_from(c.max_queue_size).unwrap_or(u32::MAX),
                }),
            }),
        parameters: (c.parameters.iter())
            .map(|(k, v)| {
                let p = pb::ModelParameter {
                    string_value: v.clone(),
                };
                (k.clone(), p)
            })
            .collect(),
    }
}

/// The statistics extension's messages from [`crate::stats::ModelStats`].
fn stats_of(m: crate::stats::ModelStats) -> pb::ModelStatistics {
    let d = |t: crate::stats::Tally| {
        Some(pb::StatisticDuration {
            count: t.count,
            ns: t.ns,
        })
    };
    let i = &m.inference_stats;
    pb::ModelStatistics {
        name: m.name,
        version: m.version,
        last_inference: m.last_inference,
        inference_count: m.inference_count,
        execution_count: m.execution_count,
        inference_stats: Some(pb::InferStatistics {
            success: d(i.success),
            fail: d(i.fail),
            queue: d(i.queue),
            compute_input: d(i.compute_input),
            compute_infer: d(i.compute_infer),
            compute_output: d(i.compute_output),
            cache_hit: d(i.cache_hit),
            cache_miss: d(i.cache_miss),
        }),
        batch_stats: m
            .batch_stats
            .into_iter()
            .map(|b| pb::InferBatchStatistics {
                batch_size: b.batch_size,
                compute_input: d(b.compute_input),
                compute_infer: d(b.compute_infer),
                compute_output: d(b.compute_output),
            })
            .collect(),
    }
}

/// Serve gRPC on `listener` until `stop` turns true (requests in flight finish; open streams
/// take no more requests and end once theirs are answered).
pub async fn serve(
    server: Arc<Server>,
    listener: tokio::net::TcpListener,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(), ServeError> {
    let limit = server.limits.max_body_bytes;
    let mut rx = stop.clone();
    let shutdown = async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let svc = GRPCInferenceServiceServer::new(Service { server, stop })
        .max_decoding_message_size(limit)
        .max_encoding_message_size(usize::MAX);
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    tonic::transport::Server::builder()
        .add_service(svc)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
        .map_err(|e| ServeError::internal(format!("gRPC server: {e}")))
}
