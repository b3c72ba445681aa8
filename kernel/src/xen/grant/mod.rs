//! Grant tables, both directions.
//!
//! Owns: [`table`], our own v1 grant table (the kernel grants frames of its tasks to other
//! domains and revokes them only when Xen says no one is using them), and [`window`], the
//! per-task window where foreign grants get mapped, with the validation of a task's batched map,
//! unmap and copy requests. Xen is reached through [`GrantHypervisor`], so host tests run the
//! logic against a fake hypervisor.

pub mod table;
pub mod window;

use super::abi::grant_table::{GnttabCopy, GnttabMapGrantRef, GnttabUnmapGrantRef};
use super::hypercall::{self, Errno, Hypercall};

/// The three batched grant operations the gateway issues. Each fills in the per-op `status`.
pub trait GrantHypervisor {
    fn map(&self, ops: &mut [GnttabMapGrantRef]) -> Result<(), Errno>;
    fn unmap(&self, ops: &mut [GnttabUnmapGrantRef]) -> Result<(), Errno>;
    fn copy(&self, ops: &mut [GnttabCopy]) -> Result<(), Errno>;
}

/// [`GrantHypervisor`] through real hypercalls.
pub struct XenGrantOps<'h, H>(pub &'h H);

impl<H: Hypercall> GrantHypervisor for XenGrantOps<'_, H> {
    fn map(&self, ops: &mut [GnttabMapGrantRef]) -> Result<(), Errno> {
        hypercall::grant_table_op(self.0, ops)
    }
    fn unmap(&self, ops: &mut [GnttabUnmapGrantRef]) -> Result<(), Errno> {
        hypercall::grant_table_op(self.0, ops)
    }
    fn copy(&self, ops: &mut [GnttabCopy]) -> Result<(), Errno> {
        hypercall::grant_table_op(self.0, ops)
    }
}
