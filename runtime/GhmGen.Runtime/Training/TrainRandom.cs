// The random numbers of the data side of training, each a pure function of (seed, purpose, epoch,
// index) so that a resumed run, or one with a different number of loader workers, draws exactly
// what an uninterrupted run drew. mmdetection uses numpy's global RNG here; its draws cannot be
// reproduced, only its rules (see EpochSampler and TrainPipeline).
//
// Generator: SplitMix64 (Steele, Lea, Flood 2014; Vigna's reference constants). Key of a stream:
//   k0 = Mix(seed + Gamma * (purpose + 1)); k1 = Mix(k0 + Gamma * (epoch + 1)); state = Mix(k1 + Gamma * (index + 1))
// with Gamma = 0x9E3779B97F4A7C15 and Mix the SplitMix64 finaliser; then Next(): state += Gamma,
// return Mix(state). Uniform integers in [0, n): Lemire's multiply-shift with rejection (unbiased).
// Uniform doubles in [0, 1): (Next() >> 11) * 2^-53.
// Tests: tests/GhmGen.Runtime.Tests/Training/EpochSamplerTests.cs.
namespace GhmGen.Training;

/// <summary>Deterministic random draws of the training data pipeline (flips and epoch shuffles).</summary>
public static class TrainRandom
{
    /// <summary>Purpose of a random stream, part of its key.</summary>
    internal enum Purpose : ulong
    {
        Shuffle = 1,
        Flip = 2,
    }

    /// <summary>
    /// Whether the sample at <paramref name="position"/> of epoch <paramref name="epoch"/>'s order is flipped:
    /// u &lt; <paramref name="probability"/>, u the first double of the stream keyed (seed, flip, epoch, position).
    /// Probability 0 never flips, 1 always does.
    /// </summary>
    public static bool ShouldFlip(long seed, int epoch, int position, double probability)
    {
        if (!(probability >= 0 && probability <= 1))
            throw new ArgumentOutOfRangeException(nameof(probability), $"flip probability must be in [0, 1], got {probability}");
        var random = new SplitMix64(seed, Purpose.Flip, epoch, position);
        return random.NextDouble() < probability;
    }

    /// <summary>SplitMix64 keyed as the file header says.</summary>
    internal struct SplitMix64
    {
        private const ulong Gamma = 0x9E3779B97F4A7C15;
        private ulong _state;

        public SplitMix64(long seed, Purpose purpose, long epoch, long index)
        {
            ulong k = Mix((ulong)seed + Gamma * ((ulong)purpose + 1));
            k = Mix(k + Gamma * ((ulong)epoch + 1));
            _state = Mix(k + Gamma * ((ulong)index + 1));
        }

        /// <summary>A generator with a raw state, as splitmix64.c's seed (for its reference sequence).</summary>
        internal static SplitMix64 FromState(ulong state) => new() { _state = state };

        public ulong Next()
        {
            _state += Gamma;
            return Mix(_state);
        }

        public double NextDouble() => (Next() >> 11) * (1.0 / (1UL << 53));

        /// <summary>Uniform in [0, <paramref name="bound"/>), Lemire's method.</summary>
        public int NextBelow(int bound)
        {
            if (bound <= 0) throw new ArgumentOutOfRangeException(nameof(bound), bound, "bound must be positive");
            ulong n = (ulong)bound;
            ulong product = (ulong)(uint)(Next() >> 32) * n;
            uint low = (uint)product;
            if (low < n)
            {
                uint threshold = (uint)((0x1_0000_0000UL - n) % n); // 2^32 mod n
                while (low < threshold)
                {
                    product = (ulong)(uint)(Next() >> 32) * n;
                    low = (uint)product;
                }
            }
            return (int)(product >> 32);
        }

        private static ulong Mix(ulong z)
        {
            z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9;
            z = (z ^ (z >> 27)) * 0x94D049BB133111EB;
            return z ^ (z >> 31);
        }
    }
}
