using System.Text;
using System.Text.Json;
using GhmGen.Training;

namespace GhmGen.Runtime.Tests.Training;

/// <summary><see cref="TrainingLogWriter"/>: mmcv's log.json lines, full precision, safe appends.</summary>
public sealed class TrainingLogTests
{
    private static string TempPath() => Path.Combine(Path.GetTempPath(), $"ghm-log-{Guid.NewGuid():N}.json");

    private static TrainLogEntry Entry(int epoch, int iter) => new(epoch, iter, 0.005005, 1.2345679f, 0.1f, 1.3345679f, 36.5f, 0.25, 0.0125);

    [Fact]
    public void Train_line_has_mmcvs_keys_in_order_with_full_precision()
    {
        string path = TempPath();
        try
        {
            using (TrainingLogWriter log = TrainingLogWriter.Create(path))
            {
                log.WriteTrain(Entry(1, 1));
                // Flushed per line: readable while the writer is open.
                using var reader = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
                Assert.EndsWith("\n", new StreamReader(reader).ReadToEnd(), StringComparison.Ordinal);
            }
            string text = File.ReadAllText(path);
            Assert.Equal("{\"mode\":\"train\",\"epoch\":1,\"iter\":1,\"lr\":0.005005,\"time\":0.25,\"data_time\":0.0125,"
                + "\"loss_cls\":1.2345679,\"loss_bbox\":0.1,\"loss\":1.3345679,\"grad_norm\":36.5}\n", text);
            JsonElement line = JsonDocument.Parse(text).RootElement;
            Assert.Equal(1.2345679f, line.GetProperty("loss_cls").GetSingle()); // the float32 value round-trips
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void Skipped_images_are_a_trailing_key_only_on_lines_that_had_skips()
    {
        string path = TempPath();
        try
        {
            using (TrainingLogWriter log = TrainingLogWriter.Create(path))
            {
                log.WriteTrain(Entry(1, 1) with { SkippedImages = 3 });
                log.WriteTrain(Entry(1, 2));
            }
            string[] lines = File.ReadAllLines(path);
            Assert.EndsWith(",\"grad_norm\":36.5,\"skipped_images\":3}", lines[0], StringComparison.Ordinal);
            Assert.EndsWith(",\"grad_norm\":36.5}", lines[1], StringComparison.Ordinal);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void Val_line_and_non_finite_values_are_written_as_python_does()
    {
        string path = TempPath();
        try
        {
            using (TrainingLogWriter log = TrainingLogWriter.Create(path))
            {
                log.WriteValidation(1, 500, 0.01, [KeyValuePair.Create("bbox_mAP", 0.123), KeyValuePair.Create("bbox_mAP_50", 0.25)]);
                log.WriteTrain(new TrainLogEntry(2, 1, 0.01, float.NaN, float.PositiveInfinity, float.NegativeInfinity, 1, 0, 0));
                Assert.Throws<ArgumentException>(() => log.WriteValidation(1, 1, 0.01, [KeyValuePair.Create("lr", 1.0)]));
            }
            string[] lines = File.ReadAllLines(path);
            Assert.Equal("{\"mode\":\"val\",\"epoch\":1,\"iter\":500,\"lr\":0.01,\"bbox_mAP\":0.123,\"bbox_mAP_50\":0.25}", lines[0]);
            Assert.Contains("\"loss_cls\":NaN,\"loss_bbox\":Infinity,\"loss\":-Infinity", lines[1], StringComparison.Ordinal);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void Append_cuts_a_partial_last_line()
    {
        string path = TempPath();
        try
        {
            using (TrainingLogWriter log = TrainingLogWriter.Create(path))
            {
                log.WriteTrain(Entry(1, 1));
                log.WriteTrain(Entry(1, 2));
            }
            File.AppendAllText(path, "{\"mode\":\"train\",\"epoch\":1,\"it");
            using (TrainingLogWriter log = TrainingLogWriter.Append(path)) log.WriteTrain(Entry(1, 3));
            string[] lines = File.ReadAllLines(path);
            Assert.Equal(3, lines.Length);
            Assert.Equal([1, 2, 3], lines.Select(l => JsonDocument.Parse(l).RootElement.GetProperty("iter").GetInt32()));
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void Append_for_a_resume_drops_lines_past_the_checkpoint()
    {
        string path = TempPath();
        try
        {
            File.WriteAllText(path, "{\"env_info\":\"kept\"}\n", Encoding.UTF8);
            using (TrainingLogWriter log = TrainingLogWriter.Append(path))
            {
                for (int i = 1; i <= 3; i++) log.WriteTrain(Entry(1, i));
                log.WriteValidation(1, 10, 0.01, [KeyValuePair.Create("bbox_mAP", 0.1)]);
                for (int i = 1; i <= 4; i++) log.WriteTrain(Entry(2, i));
            }
            // Checkpoint after epoch 1 (1 epoch done) plus 2 iterations of epoch 2.
            using (TrainingLogWriter log = TrainingLogWriter.Append(path, new TrainingProgress(1, 5, 2))) log.WriteTrain(Entry(2, 3));
            string[] lines = File.ReadAllLines(path);
            Assert.Equal("{\"env_info\":\"kept\"}", lines[0]);
            Assert.Equal(["train 1 1", "train 1 2", "train 1 3", "val 1 10", "train 2 1", "train 2 2", "train 2 3"], lines.Skip(1).Select(Describe));

            // At the end of epoch 1: its val line stays, epoch 2's lines go.
            using (TrainingLogWriter log = TrainingLogWriter.Append(path, new TrainingProgress(1, 3))) { }
            Assert.Equal(["train 1 1", "train 1 2", "train 1 3", "val 1 10"], File.ReadAllLines(path).Skip(1).Select(Describe));

            // Inside epoch 1 (not completed): its val line goes.
            using (TrainingLogWriter log = TrainingLogWriter.Append(path, new TrainingProgress(0, 3, 3))) { }
            Assert.Equal(["train 1 1", "train 1 2", "train 1 3"], File.ReadAllLines(path).Skip(1).Select(Describe));
        }
        finally
        {
            File.Delete(path);
        }
    }

    private static string Describe(string line)
    {
        JsonElement e = JsonDocument.Parse(line).RootElement;
        return $"{e.GetProperty("mode").GetString()} {e.GetProperty("epoch").GetInt32()} {e.GetProperty("iter").GetInt32()}";
    }
}
