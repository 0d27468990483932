using System.Text.Json.Serialization;
using Cairn.EventStore;

namespace Cairn;

/// <summary>Source-generated JSON for Cairn's own shapes: metadata and lifecycle records.</summary>
[JsonSourceGenerationOptions(DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(IReadOnlyDictionary<string, string>))]
[JsonSerializable(typeof(Dictionary<string, string>))]
[JsonSerializable(typeof(StreamRules.LifecycleRecordData))]
[JsonSerializable(typeof(string[]))]
[JsonSerializable(typeof(Messaging.QueueSettingsData))]
[JsonSerializable(typeof(Messaging.FailureInfo))]
internal sealed partial class CairnJsonContext : JsonSerializerContext;
