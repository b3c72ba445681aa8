//! Device access for user-mode drivers (ACPI, PCI, claims, MSI-X, time).
