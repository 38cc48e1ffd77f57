//! The adapter's memory, which wgpu's API does not expose: on Vulkan, the device-local
//! heaps from the physical device's memory properties, and what is free in them from
//! `VK_EXT_memory_budget` where the driver has it. Other backends (Metal, DX12, GL)
//! report nothing here, and the probe says the size is not known.

#[cfg(not(target_vendor = "apple"))]
use ash::vk;

/// Total and free bytes of the adapter's device-local memory; `None` where unknown.
pub struct DeviceMemory {
    pub total_bytes: u64,
    pub free_bytes: Option<u64>,
}

/// The adapter's memory: not known on Apple's platforms (Metal) yet.
#[cfg(target_vendor = "apple")]
pub fn device_memory(_adapter: &wgpu::Adapter) -> Option<DeviceMemory> {
    None
}

/// The adapter's memory, read through its Vulkan physical device.
#[cfg(not(target_vendor = "apple"))]
pub fn device_memory(adapter: &wgpu::Adapter) -> Option<DeviceMemory> {
    // SAFETY: the hal adapter is only read, and only while `adapter` is alive.
    let hal = unsafe { adapter.as_hal::<wgpu::hal::api::Vulkan>() }?;
    let instance = hal.shared_instance().raw_instance();
    let device = hal.raw_physical_device();
    let with_budget =
        hal.physical_device_capabilities().supports_extension(ash::ext::memory_budget::NAME);
    let mut budget = vk::PhysicalDeviceMemoryBudgetPropertiesEXT::default();
    let mut properties = vk::PhysicalDeviceMemoryProperties2::default();
    if with_budget {
        properties = properties.push_next(&mut budget);
    }
    // SAFETY: `device` belongs to `instance`; the output structures are valid and
    // chained as the specification requires (the budget only with its extension).
    unsafe { instance.get_physical_device_memory_properties2(device, &mut properties) };
    let heaps = properties.memory_properties.memory_heaps_as_slice();
    let local: Vec<usize> = (0..heaps.len())
        .filter(|&i| heaps[i].flags.contains(vk::MemoryHeapFlags::DEVICE_LOCAL))
        .collect();
    let total_bytes = local.iter().map(|&i| heaps[i].size).sum();
    let free_bytes = with_budget.then(|| {
        local.iter().map(|&i| budget.heap_budget[i].saturating_sub(budget.heap_usage[i])).sum()
    });
    (total_bytes > 0).then_some(DeviceMemory { total_bytes, free_bytes })
}
