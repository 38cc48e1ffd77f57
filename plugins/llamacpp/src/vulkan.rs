//! Vulkan's software renderers (Mesa's lavapipe, which names its device `llvmpipe …`;
//! SwiftShader): devices of Vulkan's CPU type.
//!
//! ggml's Vulkan module hides them unless `GGML_VK_VISIBLE_DEVICES` names them, and
//! would treat one it shows as a GPU. Running a model there is slower than ggml's own
//! CPU backend on the same cores, so the plugin never offloads to one unless asked by
//! name; but a machine whose only Vulkan device is one should still list it, so that a
//! run can be told to use it (the tests run the Vulkan module on lavapipe that way).

use ash::vk;

/// ggml-vulkan's variable: indices into Vulkan's device list, as `CUDA_VISIBLE_DEVICES`.
const VISIBLE_ENV: &str = "GGML_VK_VISIBLE_DEVICES";

/// Vulkan's devices, in the loader's order (the order ggml's indices count in): each
/// device's name and whether it is a software renderer. Empty without a Vulkan loader
/// or driver.
fn devices() -> Vec<(String, bool)> {
    // SAFETY: loads the system's Vulkan loader; it stays loaded while `entry` lives.
    let Ok(entry) = (unsafe { ash::Entry::load() }) else { return Vec::new() };
    let app = vk::ApplicationInfo::default().api_version(vk::API_VERSION_1_1);
    let info = vk::InstanceCreateInfo::default().application_info(&app);
    // SAFETY: a valid create info; the instance is destroyed below.
    let Ok(instance) = (unsafe { entry.create_instance(&info, None) }) else { return Vec::new() };
    // SAFETY: the instance is alive; the handles are only used while it is.
    let found = unsafe { instance.enumerate_physical_devices() }.unwrap_or_default();
    let devices = found
        .into_iter()
        .map(|device| {
            // SAFETY: a device handle of this instance.
            let properties = unsafe { instance.get_physical_device_properties(device) };
            let name = properties.device_name_as_c_str().ok().and_then(|name| name.to_str().ok());
            (
                name.unwrap_or_default().to_string(),
                properties.device_type == vk::PhysicalDeviceType::CPU,
            )
        })
        .collect();
    // SAFETY: nothing made from the instance outlives this call.
    unsafe { instance.destroy_instance(None) };
    devices
}

/// Before ggml's Vulkan module is loaded: where Vulkan has nothing but software
/// renderers and `GGML_VK_VISIBLE_DEVICES` is unset, make them visible to ggml. Returns
/// the software renderers' names, which ggml reports as its devices' descriptions.
pub fn reveal_software_devices() -> Vec<String> {
    let devices = devices();
    let software: Vec<usize> = (0..devices.len()).filter(|&index| devices[index].1).collect();
    if !software.is_empty()
        && software.len() == devices.len()
        && std::env::var_os(VISIBLE_ENV).is_none()
    {
        let indices: Vec<String> = software.iter().map(usize::to_string).collect();
        // Once, at the plugin's start, before ggml (the only reader) is loaded.
        std::env::set_var(VISIBLE_ENV, indices.join(","));
    }
    devices.into_iter().filter(|(_, software)| *software).map(|(name, _)| name).collect()
}
