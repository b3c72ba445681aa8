//! Physical memory: frames and the kernel's page tables. (The heap is linked_list_allocator's
//! `LockedHeap`, given its memory in the boot sequence.)
pub mod frame;
pub mod paging;
