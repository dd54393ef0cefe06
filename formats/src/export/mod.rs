//! Writers: one per export format, each turning images and their shapes into the files of an
//! archive (`archive.rs`) in the layout its readers expect.

pub mod archive;
pub mod coco;
pub mod csv;
pub mod cvat;
pub mod labelme;
pub mod reserved;
pub mod shapes;
pub mod splits;
pub mod voc;
pub mod yolo;
