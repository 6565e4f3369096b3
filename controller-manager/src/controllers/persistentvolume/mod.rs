//! The PersistentVolume binder: binds claims to the volumes that fit them best,
//! keeps both sides' phases, and reclaims volumes whose claims are gone.

pub mod controller;
pub mod matching;
pub mod scratch;

pub use controller::PersistentVolumeController;
