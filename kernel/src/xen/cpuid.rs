//! Detecting Xen through the hypervisor CPUID leaves.
//!
//! Owns: finding the Xen leaf block (base 0x4000_0000 + k * 0x100; Viridian emulation moves Xen
//! up by one block), and decoding its version, hypercall-page MSR and HVM feature leaves. CPUID is
//! reached through the [`Cpuid`] trait so host tests run against fake tables.

/// Executes CPUID.
pub trait Cpuid {
    /// The registers (eax, ebx, ecx, edx) for `leaf` with sub-leaf 0.
    fn cpuid(&self, leaf: u32) -> CpuidRegs;
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuidRegs {
    pub eax: u32,
    pub ebx: u32,
    pub ecx: u32,
    pub edx: u32,
}

/// The first hypervisor leaf and how far the scan goes.
pub const LEAF_BASE_FIRST: u32 = 0x4000_0000;
pub const LEAF_BASE_LAST: u32 = 0x4001_0000;
pub const LEAF_BASE_STEP: u32 = 0x100;

/// "XenVMMXenVMM" in EBX, ECX, EDX.
pub const SIGNATURE: [u32; 3] = [0x566e_6558, 0x6558_4d4d, 0x4d4d_566e];

/// HVM feature bits of leaf base+4 EAX.
pub const HVM_APIC_ACCESS_VIRT: u32 = 1 << 0;
pub const HVM_X2APIC_VIRT: u32 = 1 << 1;
/// Grant maps get IOMMU entries too (so devices can DMA to mapped foreign grants).
pub const HVM_IOMMU_MAPPINGS: u32 = 1 << 2;
pub const HVM_VCPU_ID_PRESENT: u32 = 1 << 3;
pub const HVM_DOMID_PRESENT: u32 = 1 << 4;
/// `HVMOP_set_evtchn_upcall_vector` is available.
pub const HVM_UPCALL_VECTOR: u32 = 1 << 6;

/// What the Xen leaves say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XenInfo {
    /// The leaf block base (0x4000_0000 unless another interface sits in front of Xen).
    pub base: u32,
    pub major: u16,
    pub minor: u16,
    /// The MSR that takes the guest-physical address of the hypercall page.
    pub hypercall_msr: u32,
    /// How many hypercall pages Xen offers (we use the first).
    pub hypercall_pages: u32,
    /// Leaf base+4 EAX, if the block reaches that far.
    pub hvm_features: Option<u32>,
    /// Our vCPU id, when `HVM_VCPU_ID_PRESENT`.
    pub vcpu_id: Option<u32>,
    /// Our domain id, when `HVM_DOMID_PRESENT`.
    pub domid: Option<u16>,
}

impl XenInfo {
    pub fn has_feature(&self, bit: u32) -> bool {
        self.hvm_features.is_some_and(|f| f & bit != 0)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DetectError {
    /// No leaf block carries the Xen signature: not running on Xen.
    NotXen,
    /// A Xen block reports fewer than the leaves we need (max leaf in EAX).
    TooFewLeaves { base: u32, max_leaf: u32 },
    /// Leaf base+2 reports no hypercall page.
    NoHypercallPage { base: u32 },
}

impl core::fmt::Display for DetectError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            DetectError::NotXen => write!(
                f,
                "no XenVMMXenVMM signature in CPUID leaves 0x40000000..0x40010000"
            ),
            DetectError::TooFewLeaves { base, max_leaf } => write!(
                f,
                "Xen CPUID block at {base:#x} ends at leaf {max_leaf:#x} (need base+2)"
            ),
            DetectError::NoHypercallPage { base } => {
                write!(f, "Xen CPUID leaf {:#x} offers no hypercall page", base + 2)
            }
        }
    }
}

/// The Xen leaf block carrying the signature: (its base leaf, its highest leaf).
pub fn find_leaves(cpu: &impl Cpuid) -> Option<(u32, u32)> {
    (LEAF_BASE_FIRST..LEAF_BASE_LAST)
        .step_by(LEAF_BASE_STEP as usize)
        .map(|base| (base, cpu.cpuid(base)))
        .find(|(_, r)| [r.ebx, r.ecx, r.edx] == SIGNATURE)
        .map(|(base, r)| (base, r.eax))
}

/// Finds the Xen leaf block and decodes it.
pub fn detect(cpu: &impl Cpuid) -> Result<XenInfo, DetectError> {
    let (base, max_leaf) = find_leaves(cpu).ok_or(DetectError::NotXen)?;
    if max_leaf < base || max_leaf - base < 2 {
        return Err(DetectError::TooFewLeaves { base, max_leaf });
    }
    let version = cpu.cpuid(base + 1).eax;
    let page = cpu.cpuid(base + 2);
    if page.eax == 0 {
        return Err(DetectError::NoHypercallPage { base });
    }
    let hvm = (max_leaf - base >= 4).then(|| cpu.cpuid(base + 4));
    let features = hvm.map(|r| r.eax);
    Ok(XenInfo {
        base,
        major: (version >> 16) as u16,
        minor: version as u16,
        hypercall_msr: page.ebx,
        hypercall_pages: page.eax,
        hvm_features: features,
        vcpu_id: hvm
            .filter(|r| r.eax & HVM_VCPU_ID_PRESENT != 0)
            .map(|r| r.ebx),
        domid: hvm
            .filter(|r| r.eax & HVM_DOMID_PRESENT != 0)
            .map(|r| r.ecx as u16),
    })
}

/// The real CPUID instruction.
#[cfg(target_arch = "x86_64")]
pub struct NativeCpuid;

#[cfg(target_arch = "x86_64")]
impl Cpuid for NativeCpuid {
    fn cpuid(&self, leaf: u32) -> CpuidRegs {
        let r = core::arch::x86_64::__cpuid_count(leaf, 0);
        CpuidRegs {
            eax: r.eax,
            ebx: r.ebx,
            ecx: r.ecx,
            edx: r.edx,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    struct Table(BTreeMap<u32, CpuidRegs>);

    impl Cpuid for Table {
        fn cpuid(&self, leaf: u32) -> CpuidRegs {
            self.0.get(&leaf).copied().unwrap_or_default()
        }
    }

    fn regs(eax: u32, ebx: u32, ecx: u32, edx: u32) -> CpuidRegs {
        CpuidRegs { eax, ebx, ecx, edx }
    }

    fn xen_at(base: u32, max: u32) -> Table {
        let mut t = BTreeMap::new();
        t.insert(
            base,
            regs(base + max, SIGNATURE[0], SIGNATURE[1], SIGNATURE[2]),
        );
        t.insert(base + 1, regs(0x0004_0011, 0, 0, 0));
        t.insert(base + 2, regs(1, 0x4000_0000, 0, 0));
        t.insert(
            base + 4,
            regs(
                HVM_IOMMU_MAPPINGS | HVM_VCPU_ID_PRESENT | HVM_DOMID_PRESENT,
                0,
                7,
                0,
            ),
        );
        Table(t)
    }

    #[test]
    fn finds_xen_at_the_first_block() {
        let info = detect(&xen_at(0x4000_0000, 5)).unwrap();
        assert_eq!(info.base, 0x4000_0000);
        assert_eq!((info.major, info.minor), (4, 17));
        assert_eq!(info.hypercall_msr, 0x4000_0000);
        assert_eq!(info.hypercall_pages, 1);
        assert!(info.has_feature(HVM_IOMMU_MAPPINGS));
        assert!(!info.has_feature(HVM_UPCALL_VECTOR));
        assert_eq!(info.vcpu_id, Some(0));
        assert_eq!(info.domid, Some(7));
    }

    #[test]
    fn finds_xen_behind_viridian() {
        let mut t = xen_at(0x4000_0100, 5);
        // Hyper-V's signature at the first block must not be taken for Xen.
        t.0.insert(
            0x4000_0000,
            regs(0x4000_0006, 0x7263_694d, 0x666f_736f, 0x7648_2074),
        );
        let info = detect(&t).unwrap();
        assert_eq!(info.base, 0x4000_0100);
        assert_eq!(info.major, 4);
    }

    #[test]
    fn not_xen_and_short_blocks_are_errors() {
        assert_eq!(detect(&Table(BTreeMap::new())), Err(DetectError::NotXen));
        let t = xen_at(0x4000_0000, 1);
        assert_eq!(
            detect(&t),
            Err(DetectError::TooFewLeaves {
                base: 0x4000_0000,
                max_leaf: 0x4000_0001
            })
        );
        let mut t = xen_at(0x4000_0000, 2);
        assert_eq!(detect(&t).unwrap().hvm_features, None);
        t.0.insert(0x4000_0002, regs(0, 0x4000_0000, 0, 0));
        assert_eq!(
            detect(&t),
            Err(DetectError::NoHypercallPage { base: 0x4000_0000 })
        );
        // A bogus max leaf below the base must not underflow.
        let mut t = xen_at(0x4000_0000, 5);
        t.0.get_mut(&0x4000_0000).unwrap().eax = 3;
        assert!(matches!(detect(&t), Err(DetectError::TooFewLeaves { .. })));
    }
}
