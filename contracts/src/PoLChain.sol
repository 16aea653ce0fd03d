// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title PoLChain
/// @notice Records a Proof-of-Learning chain whose blocks are verified off chain (Directed Guiding
/// Gradients) and attested here. The contract hashes each header itself, checks that it extends the
/// tip, and derives the next block's requirements from the tip hash.
/// @dev The header layout, its hash and the requirement derivation are specified in docs/PROTOCOL.md
/// and pinned by tests/vectors/*.json, which both forge and pytest check.
contract PoLChain {
    // ───────────────────────────────────────────── types ─────────────────────────────────────────────

    /// @notice A block header; `keccak256(abi.encode(header))` is the block hash.
    struct Header {
        bytes32 parent;
        uint64 height;
        bytes32 taskSpecHash;
        bytes32 weightsHash; // W, before the verified step
        bytes32 newWeightsHash; // W', the verifier's canonical recomputation
        uint32[] indices; // P
        uint32 correctBefore;
        uint32 correctAfter;
        uint8 difficulty; // k
        address miner;
    }

    /// @notice Everything fixed at genesis.
    struct Genesis {
        bytes32 taskSpecHash;
        bytes32 weightsHash;
        uint64 numParams; // |W|
        uint32 batchSize; // S
        uint32 correct; // correct test predictions of the genesis weights
        uint32 sabotageTolerance;
        uint8 difficulty; // initial k
        uint8 minDifficulty;
        uint8 maxDifficulty;
        uint8 maxRetargetStep; // most bits k may move at one retarget
        uint32 retargetInterval; // blocks per difficulty epoch
        uint32 targetBlockTime; // seconds
        address attester;
        address owner;
    }

    // ──────────────────────────────────────────── errors ─────────────────────────────────────────────

    /// @notice The header's parent is not the tip.
    error StaleParent(bytes32 expected, bytes32 got);
    /// @notice The header's height is not tip height + 1.
    error WrongHeight(uint64 expected, uint64 got);
    /// @notice The caller may not attest blocks.
    error NotAttester(address who);
    /// @notice The caller is not the owner.
    error NotOwner(address who);
    /// @notice The header is for another task.
    error WrongTask(bytes32 expected, bytes32 got);
    /// @notice The header's k is not the current difficulty.
    error WrongDifficulty(uint8 expected, uint8 got);
    /// @notice P does not hold exactly S indices.
    error WrongBatchSize(uint256 expected, uint256 got);
    /// @notice accuracy(W', E) must exceed accuracy(W, E).
    error AccuracyNotImproved(uint32 correctBefore, uint32 correctAfter);
    /// @notice W scores more than the tolerance below the parent's W'.
    error SabotageGuard(uint32 parentCorrect, uint32 correctBefore, uint32 tolerance);
    /// @notice k is outside [1, 255] or more than half of |W|.
    error InvalidDifficulty(uint256 k, uint256 numParams);
    /// @notice A genesis parameter is unusable.
    error InvalidGenesis(string reason);
    /// @notice The zero address was given where an account is needed.
    error ZeroAddress();
    /// @notice The header's calldata is not the canonical abi.encode(header) the hash is defined on.
    error NonCanonicalEncoding(uint256 calldataLength);
    /// @notice A correct count does not fit the 24 bits the tip stores.
    error CountTooLarge(uint256 count);

    // ──────────────────────────────────────────── events ─────────────────────────────────────────────

    /// @notice A block was recorded; the data is exactly abi.encode(header), so logs rebuild the chain.
    /// Difficulty changes need no event of their own: every header carries its k.
    event BlockAttested(bytes32 indexed blockHash, Header header);
    /// @notice The attester changed from `previous` to `attester`.
    event AttesterChanged(address indexed previous, address indexed attester);
    /// @notice Ownership moved.
    event OwnershipTransferred(address indexed previousOwner, address indexed newOwner);

    // ──────────────────────────────────────────── storage ────────────────────────────────────────────

    /// @notice Hash of the tip block; it commits to the whole history through parent links.
    bytes32 public tipHash;
    /// @notice Hash of W' at the tip: the model everyone trains next.
    bytes32 public latestModelHash;

    /// @dev Everything a submission reads besides the two hashes, in one slot (one cold access).
    /// A k-of-n quorum is added beside it, not in it: a `mapping(address => bool)` signer set and a
    /// threshold in their own slots, and a `submitBlockSigned(h, sigs)` path that checks EIP-712
    /// signatures over the block hash (domain: name, version, chain id, this address; signers
    /// strictly ascending, so none counts twice; replay-safe because the parent must be the tip).
    /// The single-attester path below stays as it is.
    struct Tip {
        address attester; // the one account that may send submitBlock
        uint32 height;
        uint24 correct; // correctAfter of the tip, for the sabotage guard
        uint8 difficulty;
        uint32 epochStart; // timestamp at which the current difficulty epoch started
    }

    Tip internal _tip;

    /// @notice The account that manages the attester.
    address public owner;

    bytes32 public immutable TASK_SPEC_HASH;
    bytes32 public immutable GENESIS_HASH;
    uint256 public immutable NUM_PARAMS;
    uint256 public immutable BATCH_SIZE;
    uint32 public immutable SABOTAGE_TOLERANCE;
    uint8 public immutable MIN_DIFFICULTY;
    uint8 public immutable MAX_DIFFICULTY;
    uint8 public immutable MAX_RETARGET_STEP;
    uint32 public immutable RETARGET_INTERVAL;
    uint32 public immutable TARGET_BLOCK_TIME;

    // ────────────────────────────────────────── constructor ──────────────────────────────────────────

    /// @param g The genesis parameters; the genesis block (height 0) is recorded at once.
    constructor(Genesis memory g) {
        if (g.attester == address(0) || g.owner == address(0)) revert ZeroAddress();
        if (g.batchSize == 0) revert InvalidGenesis("batchSize is zero");
        if (g.retargetInterval == 0 || g.targetBlockTime == 0) revert InvalidGenesis("retarget settings are zero");
        if (g.minDifficulty > g.difficulty || g.difficulty > g.maxDifficulty) {
            revert InvalidGenesis("difficulty outside [min, max]");
        }
        _checkDifficulty(g.minDifficulty, g.numParams);
        _checkDifficulty(g.maxDifficulty, g.numParams);

        TASK_SPEC_HASH = g.taskSpecHash;
        NUM_PARAMS = g.numParams;
        BATCH_SIZE = g.batchSize;
        SABOTAGE_TOLERANCE = g.sabotageTolerance;
        MIN_DIFFICULTY = g.minDifficulty;
        MAX_DIFFICULTY = g.maxDifficulty;
        MAX_RETARGET_STEP = g.maxRetargetStep;
        RETARGET_INTERVAL = g.retargetInterval;
        TARGET_BLOCK_TIME = g.targetBlockTime;

        Header memory genesis = Header({
            parent: bytes32(0),
            height: 0,
            taskSpecHash: g.taskSpecHash,
            weightsHash: g.weightsHash,
            newWeightsHash: g.weightsHash,
            indices: new uint32[](0),
            correctBefore: g.correct,
            correctAfter: g.correct,
            difficulty: g.difficulty,
            miner: address(0)
        });
        bytes32 genesisHash = keccak256(abi.encode(genesis));
        GENESIS_HASH = genesisHash;
        tipHash = genesisHash;
        latestModelHash = g.weightsHash;
        if (g.correct > type(uint24).max) revert CountTooLarge(g.correct);
        _tip = Tip({
            attester: g.attester,
            height: 0,
            correct: uint24(g.correct),
            difficulty: g.difficulty,
            epochStart: uint32(block.timestamp)
        });
        owner = g.owner;
        emit OwnershipTransferred(address(0), g.owner);
        emit AttesterChanged(address(0), g.attester);
        emit BlockAttested(genesisHash, genesis);
    }

    // ───────────────────────────────────────────── logic ─────────────────────────────────────────────

    /// @notice Record a verified block on top of the tip. Only an attester may call it.
    /// @param h The header, in the layout the Python core encodes.
    /// @return blockHash keccak256(abi.encode(h)), now the tip.
    function submitBlock(Header calldata h) external returns (bytes32 blockHash) {
        h; // the parameter fixes the ABI; its fields are read at their canonical offsets below
        Tip memory t = _tip;
        if (msg.sender != t.attester) revert NotAttester(msg.sender);

        // The block hash is keccak256 of the calldata itself, which is abi.encode(h) exactly when the
        // encoding is canonical: fixed offsets, S indices, no trailing bytes, no dirty high bits.
        // Checking that once lets every field be read with one calldataload, and the same bytes
        // serve the hash and the log.
        uint256 batchSize = BATCH_SIZE;
        uint256 count;
        bytes32 parent;
        uint256 height;
        bytes32 task;
        bytes32 newWeights;
        uint256 correctBefore;
        uint256 correctAfter;
        uint256 k;
        uint256 dirty;
        assembly ("memory-safe") {
            dirty := or(xor(calldataload(0x04), 0x20), xor(calldataload(0xc4), 0x140))
            count := calldataload(0x164)
            parent := calldataload(0x24)
            height := calldataload(0x44)
            task := calldataload(0x64)
            newWeights := calldataload(0xa4)
            correctBefore := calldataload(0xe4)
            correctAfter := calldataload(0x104)
            k := calldataload(0x124)
            let fields := or(or(shr(64, height), shr(32, correctBefore)), or(shr(32, correctAfter), shr(8, k)))
            dirty := or(dirty, or(fields, shr(160, calldataload(0x144))))
            for { let p := 0x184 } lt(p, calldatasize()) { p := add(p, 0x20) } { dirty := or(dirty, shr(32, calldataload(p))) }
        }
        if (dirty != 0) revert NonCanonicalEncoding(msg.data.length);
        if (count != batchSize) revert WrongBatchSize(batchSize, count);
        uint256 encodedLength = (12 + batchSize) * 32;
        if (msg.data.length != 4 + encodedLength) revert NonCanonicalEncoding(msg.data.length);

        bytes32 currentTip = tipHash;
        if (parent != currentTip) revert StaleParent(currentTip, parent);
        // The height check also makes a repeated hash impossible: heights only grow.
        if (height != uint256(t.height) + 1) revert WrongHeight(uint64(t.height) + 1, uint64(height));
        if (task != TASK_SPEC_HASH) revert WrongTask(TASK_SPEC_HASH, task);
        if (k != t.difficulty) revert WrongDifficulty(t.difficulty, uint8(k));
        if (correctAfter <= correctBefore) revert AccuracyNotImproved(uint32(correctBefore), uint32(correctAfter));
        if (correctAfter > type(uint24).max) revert CountTooLarge(correctAfter);
        if (correctBefore + SABOTAGE_TOLERANCE < t.correct) {
            revert SabotageGuard(t.correct, uint32(correctBefore), SABOTAGE_TOLERANCE);
        }

        uint256 ptr;
        assembly ("memory-safe") {
            ptr := mload(0x40)
            calldatacopy(ptr, 4, encodedLength)
            blockHash := keccak256(ptr, encodedLength)
            mstore(0x40, add(ptr, encodedLength)) // keep the bytes safe until the log below
        }

        tipHash = blockHash;
        latestModelHash = newWeights;
        t.height = uint32(height);
        t.correct = uint24(correctAfter);
        if (height % RETARGET_INTERVAL == 0) {
            t.difficulty = computeRetarget(t.difficulty, block.timestamp - t.epochStart);
            t.epochStart = uint32(block.timestamp);
        }
        _tip = t;
        // emit BlockAttested(blockHash, h), reusing the bytes already in memory.
        bytes32 topic0 = BlockAttested.selector;
        assembly ("memory-safe") {
            log2(ptr, encodedLength, topic0, blockHash)
        }
    }

    /// @notice New k after an epoch that took `elapsed` seconds. One requirement halves the success
    /// chance of an attempt, so each factor of two between target and observed time moves k by one.
    /// @param k The difficulty during the epoch.
    /// @param elapsed Seconds from the epoch's start to its last block.
    function computeRetarget(uint8 k, uint256 elapsed) public view returns (uint8) {
        // Unchecked is safe: both factors of `expected` are uint32, and `observed` doubles at most
        // 255 times from a value below 2^40.
        unchecked {
            uint256 expected = uint256(RETARGET_INTERVAL) * TARGET_BLOCK_TIME;
            uint256 observed = elapsed == 0 ? 1 : elapsed;
            uint256 steps = MAX_RETARGET_STEP;
            uint256 newK = k;
            while (steps != 0 && observed * 2 <= expected && newK < MAX_DIFFICULTY) {
                observed *= 2;
                ++newK;
                --steps;
            }
            while (steps != 0 && observed >= expected * 2 && newK > MIN_DIFFICULTY) {
                observed /= 2;
                --newK;
                --steps;
            }
            return uint8(newK);
        }
    }

    /// @notice The requirements R for a block on a parent with hash `seed`, at the current difficulty.
    /// @param seed The parent block's hash.
    /// @return r k values in [0, 2|W|): weight r/2 must decrease when r is odd, increase when even.
    function requirements(bytes32 seed) external view returns (uint256[] memory r) {
        return computeRequirements(seed, _tip.difficulty, NUM_PARAMS);
    }

    /// @notice The requirements the next block must meet: derived from the tip hash.
    /// @return r As in `requirements(tipHash)`.
    function nextRequirements() external view returns (uint256[] memory r) {
        return computeRequirements(tipHash, _tip.difficulty, NUM_PARAMS);
    }

    /// @notice r_i = keccak256(abi.encodePacked(seed, uint32(counter))) mod 2|W|, skipping any r
    /// whose weight r/2 is already required (collision avoidance), until k are drawn.
    /// @param seed The parent block's hash.
    /// @param k The difficulty.
    /// @param numParams |W|.
    /// @return r The k requirements in draw order.
    function computeRequirements(bytes32 seed, uint256 k, uint256 numParams)
        public
        pure
        returns (uint256[] memory r)
    {
        _checkDifficulty(k, numParams);
        r = new uint256[](k);
        uint256 modulus = 2 * numParams;
        uint256 found;
        for (uint32 counter; found < k; ++counter) {
            uint256 candidate = uint256(keccak256(abi.encodePacked(seed, counter))) % modulus;
            bool taken;
            for (uint256 j; j < found; ++j) {
                if (r[j] / 2 == candidate / 2) {
                    taken = true;
                    break;
                }
            }
            if (!taken) r[found++] = candidate;
        }
    }

    /// @notice Height of the tip.
    function tipHeight() external view returns (uint64) {
        return _tip.height;
    }

    /// @notice The k the next block must carry.
    function difficulty() external view returns (uint8) {
        return _tip.difficulty;
    }

    /// @notice Correct test predictions of the tip's W'.
    function tipCorrect() external view returns (uint32) {
        return _tip.correct;
    }

    /// @notice Timestamp at which the current difficulty epoch started.
    function epochStart() external view returns (uint32) {
        return _tip.epochStart;
    }

    /// @notice The account that may attest blocks.
    function attester() external view returns (address) {
        return _tip.attester;
    }

    /// @notice Whether `a` may attest blocks.
    /// @param a Any account.
    function isAttester(address a) external view returns (bool) {
        return a == _tip.attester;
    }

    /// @notice Tip hash, height, W' hash and difficulty in one call.
    function tip() external view returns (bytes32 hash, uint64 height, bytes32 modelHash, uint8 k) {
        return (tipHash, _tip.height, latestModelHash, _tip.difficulty);
    }

    /// @notice The block hash the contract computes for `h`.
    /// @param h A header.
    function hashHeader(Header calldata h) external pure returns (bytes32) {
        return keccak256(abi.encode(h));
    }

    /// @notice Rotate the attester to `a`. Owner only.
    /// @param a The new attester.
    function setAttester(address a) external {
        _onlyOwner();
        if (a == address(0)) revert ZeroAddress();
        emit AttesterChanged(_tip.attester, a);
        _tip.attester = a;
    }

    /// @notice Hand ownership to `newOwner`. Owner only.
    /// @param newOwner The next owner.
    function transferOwnership(address newOwner) external {
        _onlyOwner();
        if (newOwner == address(0)) revert ZeroAddress();
        emit OwnershipTransferred(owner, newOwner);
        owner = newOwner;
    }

    function _onlyOwner() internal view {
        if (msg.sender != owner) revert NotOwner(msg.sender);
    }

    function _checkDifficulty(uint256 k, uint256 numParams) internal pure {
        if (k == 0 || k > 255 || 2 * k > numParams) revert InvalidDifficulty(k, numParams);
    }
}
