//! The Open Inference Protocol's gRPC service (`inference.GRPCInferenceService`, as KServe
//! and Triton publish it in grpc_service.proto), generated without protoc: the messages are
//! written as prost structs in src/grpc.rs with the .proto's field numbers, and tonic-build's
//! manual builder writes the service's server half from the method list below.

fn main() {
    let methods = [
        (
            "server_live",
            "ServerLive",
            "ServerLiveRequest",
            "ServerLiveResponse",
        ),
        (
            "server_ready",
            "ServerReady",
            "ServerReadyRequest",
            "ServerReadyResponse",
        ),
        (
            "model_ready",
            "ModelReady",
            "ModelReadyRequest",
            "ModelReadyResponse",
        ),
        (
            "server_metadata",
            "ServerMetadata",
            "ServerMetadataRequest",
            "ServerMetadataResponse",
        ),
        (
            "model_metadata",
            "ModelMetadata",
            "ModelMetadataRequest",
            "ModelMetadataResponse",
        ),
        (
            "model_infer",
            "ModelInfer",
            "ModelInferRequest",
            "ModelInferResponse",
        ),
        (
            "repository_index",
            "RepositoryIndex",
            "RepositoryIndexRequest",
            "RepositoryIndexResponse",
        ),
        (
            "repository_model_load",
            "RepositoryModelLoad",
            "RepositoryModelLoadRequest",
            "RepositoryModelLoadResponse",
        ),
        (
            "repository_model_unload",
            "RepositoryModelUnload",
            "RepositoryModelUnloadRequest",
            "RepositoryModelUnloadResponse",
        ),
        (
            "model_config",
            "ModelConfig",
            "ModelConfigRequest",
            "ModelConfigResponse",
        ),
        (
            "model_statistics",
            "ModelStatistics",
            "ModelStatisticsRequest",
            "ModelStatisticsResponse",
        ),
    ];
    let mut service = tonic_build::manual::Service::builder()
        .name("GRPCInferenceService")
        .package("inference");
    for (name, route, input, output) in methods {
        service = service.method(
            tonic_build::manual::Method::builder()
                .name(name)
                .route_name(route)
                .input_type(format!("crate::grpc::pb::{input}"))
                .output_type(format!("crate::grpc::pb::{output}"))
                .codec_path("tonic_prost::ProstCodec")
                .build(),
        );
    }
    // Triton's streaming extension: a stream of requests, a stream of answers.
    service = service.method(
        tonic_build::manual::Method::builder()
            .name("model_stream_infer")
            .route_name("ModelStreamInfer")
            .input_type("crate::grpc::pb::ModelInferRequest")
            .output_type("crate::grpc::pb::ModelStreamInferResponse")
            .codec_path("tonic_prost::ProstCodec")
            .client_streaming()
            .server_streaming()
            .build(),
    );
    tonic_build::manual::Builder::new()
        .build_client(false)
        .build_transport(false)
        .compile(&[service.build()]);
    println!("cargo:rerun-if-changed=build.rs");
}
