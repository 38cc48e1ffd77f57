"""Copy a GGUF file (argv[1]) to argv[3] with its `tokenizer.chat_template` replaced by
the text of argv[2], everything else as it was: gguf-py's own copy loop (as its
gguf_new_metadata script has it, without the progress bar's package)."""

import sys

import gguf

source, template, target = sys.argv[1], open(sys.argv[2]).read(), sys.argv[3]
reader = gguf.GGUFReader(source)
architecture = reader.get_field(gguf.Keys.General.ARCHITECTURE).contents()
writer = gguf.GGUFWriter(target, architecture, endianess=reader.endianess)
for field in reader.fields.values():
    # The architecture and the header's own fields are the writer's to write.
    if field.name == gguf.Keys.General.ARCHITECTURE or field.name.startswith("GGUF."):
        continue
    if field.name.startswith(gguf.Keys.Tokenizer.CHAT_TEMPLATE):
        continue
    kind = field.types[0]
    sub_type = field.types[-1] if kind == gguf.GGUFValueType.ARRAY else None
    writer.add_key_value(field.name, field.contents(), kind, sub_type=sub_type)
writer.add_chat_template(template)
for tensor in reader.tensors:
    writer.add_tensor_info(
        tensor.name, tensor.data.shape, tensor.data.dtype, tensor.data.nbytes, tensor.tensor_type
    )
writer.write_header_to_file()
writer.write_kv_data_to_file()
writer.write_ti_data_to_file()
for tensor in reader.tensors:
    writer.write_tensor_data(tensor.data, tensor_endianess=reader.endianess)
writer.close()
