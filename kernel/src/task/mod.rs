//! Tasks: the hardware-independent parts of nc2dd's user-mode servers.
//!
//! - [`elf`]: the checked load plan of a server image;
//! - [`space`]: the user address space of one task, derived from the system table;
//! - [`notify`]: the 64-bit notification word and the wait/notify rule;
//! - [`sched`]: which task runs next;
//! - [`uaccess`]: checking user pointers against a task's regions ("allegations").
pub mod elf;
pub mod notify;
pub mod sched;
pub mod space;
pub mod uaccess;
