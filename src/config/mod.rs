//! Configuration files, for suites and chains alike: where a problem sits (`locate`), how
//! it is reported (`problem`: file, line, column and one fix), and how files named inside
//! them are found and read (`files`).

pub mod files;
pub mod locate;
pub mod problem;
