//! Code generated from `proto/tinysns/*.proto`, nested as the packages are (the internal
//! protocol refers to the social one's messages by their package path).

mod packages {
    pub mod tinysns {
        pub mod social {
            pub mod v1 {
                tonic::include_proto!("tinysns.social.v1");
            }
        }
        pub mod coordinator {
            pub mod v1 {
                tonic::include_proto!("tinysns.coordinator.v1");
            }
        }
        pub mod internal {
            pub mod v1 {
                tonic::include_proto!("tinysns.internal.v1");
            }
        }
    }
}

pub use packages::tinysns::coordinator::v1 as coordinator;
pub use packages::tinysns::internal::v1 as internal;
pub use packages::tinysns::social::v1 as social;
