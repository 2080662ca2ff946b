// Imported before the generated code: graft's 64-bit fields (millisecond times, byte sizes)
// fit in a double exactly, so they decode as plain numbers instead of Long objects.
import $protobuf from 'protobufjs/minimal.js';

($protobuf.util as { Long: unknown }).Long = undefined;
$protobuf.configure();
