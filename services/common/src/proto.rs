//! Code generated from `proto/tinysns/*.proto`.

pub mod social {
    tonic::include_proto!("tinysns.social.v1");
}

pub mod coordinator {
    tonic::include_proto!("tinysns.coordinator.v1");
}

pub mod internal {
    tonic::include_proto!("tinysns.internal.v1");
}
