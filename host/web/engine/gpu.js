// The browser's WebGPU device and what it is: the adapter's limits, whether it is a
// fallback (software) adapter, and the kernel plan that follows, chosen as
// plugins/webgpu/src/plan.rs chooses it: a software adapter (SwiftShader, llvmpipe)
// runs workgroups one after another on CPU cores, so it gets the kernels that give
// each invocation a whole row; a GPU gets the workgroup-per-row and tiled ones.

const SOFTWARE_NAMES = /swiftshader|llvmpipe|lavapipe|software/i;

export class Gpu {
  // The device of the browser's adapter, with its binding limits raised to the
  // adapter's. `plan` ('software' | 'gpu') overrides the choice, as
  // HEARTH_WEBGPU_KERNELS does natively.
  static async open(plan) {
    if (!navigator.gpu) {
      throw new Error('this browser has no WebGPU (navigator.gpu is missing; Chrome and Edge 113+ have it)');
    }
    const adapter = await navigator.gpu.requestAdapter({ powerPreference: 'high-performance' });
    if (!adapter) throw new Error('the browser offers no WebGPU adapter');
    const info = adapter.info ?? {};
    const subgroups = adapter.features.has('subgroups');
    const requiredLimits = {};
    for (const name of ['maxStorageBufferBindingSize', 'maxBufferSize', 'maxComputeWorkgroupStorageSize']) {
      requiredLimits[name] = adapter.limits[name];
    }
    const device = await adapter.requestDevice({
      requiredLimits,
      requiredFeatures: subgroups ? ['subgroups'] : [],
    });
    const fallback = Boolean(info.isFallbackAdapter ?? adapter.isFallbackAdapter);
    const name = [info.vendor, info.architecture, info.description, info.device].filter(Boolean).join(' ');
    const software = fallback || SOFTWARE_NAMES.test(name);
    const kernels = plan ?? (software ? 'software' : 'gpu');
    return new Gpu(device, {
      name: name || 'unnamed adapter',
      fallback,
      software,
      subgroups,
      kernels,
      limits: {
        maxStorageBufferBindingSize: device.limits.maxStorageBufferBindingSize,
        maxBufferSize: device.limits.maxBufferSize,
        minUniformBufferOffsetAlignment: device.limits.minUniformBufferOffsetAlignment,
      },
    });
  }

  constructor(device, profile) {
    this.device = device;
    this.profile = profile;
    this.lost = null;
    device.lost.then((info) => {
      this.lost = info.message || info.reason || 'the device was lost';
    });
  }

  // The largest buffer one binding may see.
  get bindingLimit() {
    return Math.min(this.profile.limits.maxStorageBufferBindingSize, this.profile.limits.maxBufferSize);
  }

  storage(label, bytes) {
    return this.device.createBuffer({
      label,
      size: Math.max(16, Math.ceil(bytes / 16) * 16),
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC,
    });
  }

  // A storage buffer holding `bytes` (padded to 4 bytes, plus a word that reads past
  // an unaligned last block may touch, as the native upload pads).
  upload(label, bytes) {
    const size = Math.ceil((bytes.byteLength + 4) / 16) * 16;
    const buffer = this.device.createBuffer({
      label,
      size,
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST,
      mappedAtCreation: true,
    });
    new Uint8Array(buffer.getMappedRange()).set(bytes);
    buffer.unmap();
    return buffer;
  }

  readback(bytes) {
    return this.device.createBuffer({
      label: 'readback',
      size: bytes,
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
    });
  }

  // A device error raised by anything done in `body` (out of memory, validation).
  async checked(what, body) {
    this.device.pushErrorScope('out-of-memory');
    this.device.pushErrorScope('validation');
    const result = await body();
    const validation = await this.device.popErrorScope();
    const memory = await this.device.popErrorScope();
    const error = memory ?? validation;
    if (error) throw new Error(`${what}: ${error.message}`);
    return result;
  }
}
