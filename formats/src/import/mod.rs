//! Readers: one per importable format, each turning a format's files into the format-neutral
//! `parsed::Parsed` the API's import job matches against a set's images and schema.

pub mod coco;
pub mod cvat;
pub mod parsed;
pub mod voc;
pub mod yolo;
