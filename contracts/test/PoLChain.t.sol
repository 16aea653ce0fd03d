// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {PoLChain} from "../src/PoLChain.sol";
import {TestBase} from "./utils/TestBase.sol";

/// @dev Shared set-up: a chain with digits-cnn-sized genesis and a helper that builds a valid next header.
abstract contract PoLChainFixture is TestBase {
    PoLChain internal chain;
    address internal constant ATTESTER = address(0xA77E);
    address internal constant OWNER = address(0x0B0B);
    address internal constant MINER = address(0x1111);
    bytes32 internal constant TASK = keccak256("task");
    bytes32 internal constant W0 = keccak256("genesis weights");
    uint32 internal constant G_CORRECT = 100;
    uint32 internal constant TOLERANCE = 5;
    uint32 internal constant INTERVAL = 5;
    uint32 internal constant TARGET = 10;

    function setUp() public virtual {
        vm.warp(1_000_000);
        chain = new PoLChain(genesis());
    }

    function genesis() internal pure returns (PoLChain.Genesis memory) {
        return PoLChain.Genesis({
            taskSpecHash: TASK,
            weightsHash: W0,
            numParams: 3866,
            batchSize: 4,
            correct: G_CORRECT,
            sabotageTolerance: TOLERANCE,
            difficulty: 4,
            minDifficulty: 1,
            maxDifficulty: 32,
            maxRetargetStep: 4,
            retargetInterval: INTERVAL,
            targetBlockTime: TARGET,
            attester: ATTESTER,
            owner: OWNER
        });
    }

    function nextHeader(bytes32 newWeights, uint32 before, uint32 gain) internal view returns (PoLChain.Header memory h) {
        uint32[] memory p = new uint32[](4);
        p[0] = 3;
        p[1] = 1;
        p[2] = 4;
        p[3] = 1436;
        h = PoLChain.Header({
            parent: chain.tipHash(),
            height: chain.tipHeight() + 1,
            taskSpecHash: TASK,
            weightsHash: chain.latestModelHash(),
            newWeightsHash: newWeights,
            indices: p,
            correctBefore: before,
            correctAfter: before + gain,
            difficulty: chain.difficulty(),
            miner: MINER
        });
    }

    function submit(PoLChain.Header memory h) internal returns (bytes32) {
        vm.prank(ATTESTER);
        return chain.submitBlock(h);
    }
}

contract PoLChainTest is PoLChainFixture {
    // ─── genesis ───

    function test_GenesisIsTip() public view {
        assertEq(chain.tipHeight(), 0, "height");
        assertEq(chain.latestModelHash(), W0, "model");
        assertEq(chain.tipHash(), chain.GENESIS_HASH(), "tip");
        assertEq(chain.difficulty(), 4, "k");
        assertTrue(chain.isAttester(ATTESTER), "attester");
    }

    function test_RevertWhen_GenesisDifficultyTooLarge() public {
        PoLChain.Genesis memory g = genesis();
        g.numParams = 10;
        g.maxDifficulty = 6; // 2k > |W|
        vm.expectRevert(abi.encodeWithSelector(PoLChain.InvalidDifficulty.selector, 6, 10));
        new PoLChain(g);
    }

    function testFuzz_RevertWhen_GenesisDifficultyTooLarge(uint64 numParams, uint8 maxK) public {
        vm.assume(numParams >= 8 && maxK >= 4 && uint256(maxK) * 2 > numParams);
        PoLChain.Genesis memory g = genesis();
        g.numParams = numParams;
        g.maxDifficulty = maxK;
        vm.expectPartialRevert(PoLChain.InvalidDifficulty.selector);
        new PoLChain(g);
    }

    // ─── extending the chain ───

    function test_SubmitExtendsTip() public {
        PoLChain.Header memory h = nextHeader(keccak256("w1"), 99, 2);
        bytes32 expected = keccak256(abi.encode(h));
        bytes32 got = submit(h);
        assertEq(got, expected, "returned hash");
        assertEq(chain.tipHash(), expected, "tip");
        assertEq(chain.tipHeight(), 1, "height");
        assertEq(chain.latestModelHash(), keccak256("w1"), "model");
        assertEq(chain.tipCorrect(), 101, "correct");
    }

    function testFuzz_SubmitExtendsTip(bytes32 w1, uint32 before, uint32 gain, uint8 blocks) public {
        before = uint32(bound(before, G_CORRECT - TOLERANCE, 1_000_000));
        gain = uint32(bound(gain, 1, 1000));
        blocks = uint8(bound(blocks, 1, 12));
        for (uint256 i; i < blocks; ++i) {
            PoLChain.Header memory h = nextHeader(keccak256(abi.encode(w1, i)), before, gain);
            bytes32 got = submit(h);
            assertEq(got, keccak256(abi.encode(h)), "hash");
            before = before + gain;
        }
        assertEq(chain.tipHeight(), blocks, "height");
        assertEq(chain.latestModelHash(), keccak256(abi.encode(w1, uint256(blocks) - 1)), "model");
    }

    function test_EmitsWholeHeaderOnRetargetBlocks() public {
        for (uint256 i = 1; i < INTERVAL; ++i) submit(nextHeader(keccak256(abi.encode(i)), chain.tipCorrect(), 1));
        vm.warp(block.timestamp + 1); // a fast epoch: this block also moves k, and its log still carries the header
        PoLChain.Header memory h = nextHeader(keccak256("last"), chain.tipCorrect(), 1);
        vm.expectEmit(true, false, false, true);
        emit PoLChain.BlockAttested(keccak256(abi.encode(h)), h);
        submit(h);
    }

    /// @dev Execution gas of submitBlock (without the 21k base and calldata, which bench/gas.py adds)
    /// goes to contracts/snapshots/, next to .gas-snapshot.
    function test_GasSubmitBlock() public {
        for (uint256 i = 1; i < INTERVAL; ++i) {
            PoLChain.Header memory h = nextHeader(keccak256(abi.encode(i)), chain.tipCorrect(), 1);
            h.miner = address(bytes20(keccak256("nonzero miner")));
            vm.prank(ATTESTER);
            chain.submitBlock(h);
            if (i == 2) vm.snapshotGasLastCall("submitBlock");
        }
        vm.warp(block.timestamp + 1);
        PoLChain.Header memory last = nextHeader(keccak256("last"), chain.tipCorrect(), 1);
        vm.prank(ATTESTER);
        chain.submitBlock(last);
        vm.snapshotGasLastCall("submitBlock at a retarget height");
    }

    function test_EmitsWholeHeader() public {
        PoLChain.Header memory h = nextHeader(keccak256("w1"), 100, 1);
        vm.expectEmit(true, false, false, true);
        emit PoLChain.BlockAttested(keccak256(abi.encode(h)), h);
        submit(h);
    }

    // ─── reverts, each with its fuzz twin ───

    function test_RevertWhen_NotAttester() public {
        PoLChain.Header memory h = nextHeader(keccak256("w1"), 100, 1);
        vm.prank(MINER);
        vm.expectRevert(abi.encodeWithSelector(PoLChain.NotAttester.selector, MINER));
        chain.submitBlock(h);
    }

    function testFuzz_RevertWhen_NotAttester(address who) public {
        vm.assume(who != ATTESTER);
        PoLChain.Header memory h = nextHeader(keccak256("w1"), 100, 1);
        vm.prank(who);
        vm.expectRevert(abi.encodeWithSelector(PoLChain.NotAttester.selector, who));
        chain.submitBlock(h);
    }

    function test_RevertWhen_StaleParent() public {
        PoLChain.Header memory h = nextHeader(keccak256("w1"), 100, 1);
        submit(h);
        PoLChain.Header memory again = h; // same parent as the block just recorded
        again.height = 2;
        vm.expectRevert(abi.encodeWithSelector(PoLChain.StaleParent.selector, chain.tipHash(), h.parent));
        submit(again);
    }

    function testFuzz_RevertWhen_StaleParent(bytes32 parent) public {
        vm.assume(parent != chain.tipHash());
        PoLChain.Header memory h = nextHeader(keccak256("w1"), 100, 1);
        h.parent = parent;
        vm.expectRevert(abi.encodeWithSelector(PoLChain.StaleParent.selector, chain.tipHash(), parent));
        submit(h);
    }

    function test_RevertWhen_DuplicateBlock() public {
        PoLChain.Header memory h = nextHeader(keccak256("w1"), 100, 1);
        submit(h);
        vm.expectPartialRevert(PoLChain.StaleParent.selector);
        submit(h);
    }

    function testFuzz_RevertWhen_DuplicateBlock(bytes32 w1, uint32 gain) public {
        gain = uint32(bound(gain, 1, 100));
        PoLChain.Header memory h = nextHeader(w1, 100, gain);
        submit(h);
        vm.expectPartialRevert(PoLChain.StaleParent.selector);
        submit(h);
    }

    function test_RevertWhen_WrongHeight() public {
        PoLChain.Header memory h = nextHeader(keccak256("w1"), 100, 1);
        h.height = 2;
        vm.expectRevert(abi.encodeWithSelector(PoLChain.WrongHeight.selector, 1, 2));
        submit(h);
    }

    function testFuzz_RevertWhen_WrongHeight(uint64 height) public {
        vm.assume(height != 1);
        PoLChain.Header memory h = nextHeader(keccak256("w1"), 100, 1);
        h.height = height;
        vm.expectRevert(abi.encodeWithSelector(PoLChain.WrongHeight.selector, 1, height));
        submit(h);
    }

    function test_RevertWhen_WrongTask() public {
        PoLChain.Header memory h = nextHeader(keccak256("w1"), 100, 1);
        h.taskSpecHash = keccak256("other");
        vm.expectRevert(abi.encodeWithSelector(PoLChain.WrongTask.selector, TASK, keccak256("other")));
        submit(h);
    }

    function testFuzz_RevertWhen_WrongTask(bytes32 task) public {
        vm.assume(task != TASK);
        PoLChain.Header memory h = nextHeader(keccak256("w1"), 100, 1);
        h.taskSpecHash = task;
        vm.expectRevert(abi.encodeWithSelector(PoLChain.WrongTask.selector, TASK, task));
        submit(h);
    }

    function test_RevertWhen_WrongDifficulty() public {
        PoLChain.Header memory h = nextHeader(keccak256("w1"), 100, 1);
        h.difficulty = 5;
        vm.expectRevert(abi.encodeWithSelector(PoLChain.WrongDifficulty.selector, 4, 5));
        submit(h);
    }

    function testFuzz_RevertWhen_WrongDifficulty(uint8 k) public {
        vm.assume(k != 4);
        PoLChain.Header memory h = nextHeader(keccak256("w1"), 100, 1);
        h.difficulty = k;
        vm.expectRevert(abi.encodeWithSelector(PoLChain.WrongDifficulty.selector, 4, k));
        submit(h);
    }

    function test_RevertWhen_WrongBatchSize() public {
        PoLChain.Header memory h = nextHeader(keccak256("w1"), 100, 1);
        h.indices = new uint32[](3);
        vm.expectRevert(abi.encodeWithSelector(PoLChain.WrongBatchSize.selector, 4, 3));
        submit(h);
    }

    function testFuzz_RevertWhen_WrongBatchSize(uint8 n) public {
        vm.assume(n != 4);
        PoLChain.Header memory h = nextHeader(keccak256("w1"), 100, 1);
        h.indices = new uint32[](n);
        vm.expectRevert(abi.encodeWithSelector(PoLChain.WrongBatchSize.selector, 4, n));
        submit(h);
    }

    function test_RevertWhen_AccuracyNotImproved() public {
        PoLChain.Header memory h = nextHeader(keccak256("w1"), 100, 0);
        vm.expectRevert(abi.encodeWithSelector(PoLChain.AccuracyNotImproved.selector, 100, 100));
        submit(h);
    }

    function testFuzz_RevertWhen_AccuracyNotImproved(uint32 before, uint32 afterCount) public {
        before = uint32(bound(before, G_CORRECT, type(uint32).max));
        afterCount = uint32(bound(afterCount, 0, before));
        PoLChain.Header memory h = nextHeader(keccak256("w1"), before, 0);
        h.correctAfter = afterCount;
        vm.expectRevert(abi.encodeWithSelector(PoLChain.AccuracyNotImproved.selector, before, afterCount));
        submit(h);
    }

    function test_RevertWhen_Sabotage() public {
        PoLChain.Header memory h = nextHeader(keccak256("w1"), G_CORRECT - TOLERANCE - 1, 50);
        vm.expectRevert(
            abi.encodeWithSelector(PoLChain.SabotageGuard.selector, G_CORRECT, G_CORRECT - TOLERANCE - 1, TOLERANCE)
        );
        submit(h);
    }

    function testFuzz_RevertWhen_Sabotage(uint32 before) public {
        before = uint32(bound(before, 0, G_CORRECT - TOLERANCE - 1));
        PoLChain.Header memory h = nextHeader(keccak256("w1"), before, 1000);
        vm.expectRevert(abi.encodeWithSelector(PoLChain.SabotageGuard.selector, G_CORRECT, before, TOLERANCE));
        submit(h);
    }

    function test_SabotageToleranceEdgeAccepted() public {
        submit(nextHeader(keccak256("w1"), G_CORRECT - TOLERANCE, 1));
        assertEq(chain.tipHeight(), 1, "accepted at the edge");
    }

    function testFuzz_SabotageToleranceAccepted(uint32 before) public {
        before = uint32(bound(before, G_CORRECT - TOLERANCE, 1_000_000));
        submit(nextHeader(keccak256("w1"), before, 1));
        assertEq(chain.tipHeight(), 1, "accepted within tolerance");
    }

    // ─── difficulty retarget ───

    function mineEpoch(uint256 secondsPerBlock) internal {
        for (uint256 i; i < INTERVAL; ++i) {
            vm.warp(block_timestamp() + secondsPerBlock);
            submit(nextHeader(keccak256(abi.encode(i, chain.tipHeight())), chain.tipCorrect(), 1));
        }
    }

    function block_timestamp() internal view returns (uint256) {
        return block.timestamp;
    }

    function test_RetargetUpWhenFast() public {
        mineEpoch(2); // 10 s for an epoch meant to take 50 s: factor 5 -> two doublings
        assertEq(chain.difficulty(), 6, "k up by two");
    }

    function test_RetargetDownWhenSlow() public {
        mineEpoch(45); // 225 s against 50 s: factor 4.5 -> two halvings
        assertEq(chain.difficulty(), 2, "k down by two");
    }

    function test_RetargetUnchangedOnTarget() public {
        mineEpoch(TARGET);
        assertEq(chain.difficulty(), 4, "k unchanged");
    }

    function testFuzz_RetargetBounded(uint256 secondsPerBlock) public {
        // Start at k = 10, so that both sides of the step bound (k +- 4) lie inside [min, max] = [1, 32].
        PoLChain.Genesis memory g = genesis();
        g.difficulty = 10;
        chain = new PoLChain(g);
        secondsPerBlock = bound(secondsPerBlock, 0, 100_000);
        mineEpoch(secondsPerBlock);
        uint256 k = chain.difficulty();
        assertTrue(k >= 10 - 4 && k <= 10 + 4, "at most maxRetargetStep either way");
        if (secondsPerBlock * 2 <= TARGET) assertTrue(k > 10, "fast epochs raise k");
        if (secondsPerBlock >= TARGET * 2) assertTrue(k < 10, "slow epochs lower k");
        if (secondsPerBlock * 2 > TARGET && secondsPerBlock < TARGET * 2) assertEq(k, 10, "near target keeps k");
    }

    function test_RetargetStepIsBoundedBothWays() public {
        PoLChain.Genesis memory g = genesis();
        g.difficulty = 10;
        chain = new PoLChain(g);
        mineEpoch(0); // as fast as possible: many doublings, capped at 4
        assertEq(chain.difficulty(), 14, "k up by at most 4");
        mineEpoch(100_000); // as slow as possible: many halvings, capped at 4
        assertEq(chain.difficulty(), 10, "k down by at most 4");
    }

    // ─── attesters ───

    function test_OwnerRotatesAttester() public {
        address next = address(0xBEEF);
        vm.expectEmit(true, true, false, false);
        emit PoLChain.AttesterChanged(ATTESTER, next);
        vm.prank(OWNER);
        chain.setAttester(next);
        assertTrue(chain.isAttester(next) && !chain.isAttester(ATTESTER), "rotated");
        PoLChain.Header memory h = nextHeader(keccak256("w1"), 100, 1);
        vm.prank(ATTESTER);
        vm.expectRevert(abi.encodeWithSelector(PoLChain.NotAttester.selector, ATTESTER));
        chain.submitBlock(h);
        vm.prank(next);
        chain.submitBlock(h);
        assertEq(chain.tipHeight(), 1, "new attester extends");
    }

    function testFuzz_OwnerRotatesAttester(address next) public {
        vm.assume(next != address(0));
        vm.prank(OWNER);
        chain.setAttester(next);
        PoLChain.Header memory h = nextHeader(keccak256("w1"), 100, 1);
        vm.prank(next);
        chain.submitBlock(h);
        assertEq(chain.tipHeight(), 1, "rotated attester extends");
    }

    function test_RevertWhen_NotOwner() public {
        vm.prank(ATTESTER);
        vm.expectRevert(abi.encodeWithSelector(PoLChain.NotOwner.selector, ATTESTER));
        chain.setAttester(ATTESTER);
    }

    function testFuzz_RevertWhen_NotOwner(address who) public {
        vm.assume(who != OWNER);
        vm.prank(who);
        vm.expectRevert(abi.encodeWithSelector(PoLChain.NotOwner.selector, who));
        chain.setAttester(who);
    }

    function test_RevertWhen_AttesterIsZero() public {
        vm.prank(OWNER);
        vm.expectRevert(PoLChain.ZeroAddress.selector);
        chain.setAttester(address(0));
    }

    function testFuzz_RevertWhen_CountTooLarge(uint32 afterCount) public {
        afterCount = uint32(bound(afterCount, uint256(type(uint24).max) + 1, type(uint32).max));
        PoLChain.Header memory h = nextHeader(keccak256("w1"), 100, 0);
        h.correctAfter = afterCount;
        vm.expectRevert(abi.encodeWithSelector(PoLChain.CountTooLarge.selector, afterCount));
        submit(h);
    }

    function test_RevertWhen_CountTooLarge() public {
        PoLChain.Header memory h = nextHeader(keccak256("w1"), 100, 0);
        h.correctAfter = 1 << 24;
        vm.expectRevert(abi.encodeWithSelector(PoLChain.CountTooLarge.selector, 1 << 24));
        submit(h);
    }

    function test_RevertWhen_NonCanonicalEncoding() public {
        bytes memory data = abi.encodeCall(PoLChain.submitBlock, (nextHeader(keccak256("w1"), 100, 1)));
        vm.prank(ATTESTER);
        (bool ok, bytes memory ret) = address(chain).call(bytes.concat(data, bytes32(0))); // trailing word
        assertTrue(!ok, "rejected");
        assertEq(bytes32(bytes4(ret)), bytes32(PoLChain.NonCanonicalEncoding.selector), "selector");
    }

    function testFuzz_RevertWhen_NonCanonicalEncoding(uint256 dirtyIndex, uint8 which) public {
        vm.assume(dirtyIndex > type(uint32).max);
        bytes memory data = abi.encodeCall(PoLChain.submitBlock, (nextHeader(keccak256("w1"), 100, 1)));
        uint256 offset = 4 + 32 * (12 + uint256(which % 4)); // one of the four index words
        assembly {
            mstore(add(add(data, 32), offset), dirtyIndex)
        }
        vm.prank(ATTESTER);
        (bool ok, bytes memory ret) = address(chain).call(data);
        assertTrue(!ok, "rejected");
        assertEq(bytes32(bytes4(ret)), bytes32(PoLChain.NonCanonicalEncoding.selector), "selector");
    }

    // ─── requirements ───

    function test_NextRequirementsUseTipHash() public view {
        uint256[] memory a = chain.nextRequirements();
        uint256[] memory b = chain.computeRequirements(chain.tipHash(), 4, 3866);
        assertEq(a.length, 4, "k values");
        for (uint256 i; i < a.length; ++i) assertEq(a[i], b[i], "same derivation");
    }

    function testFuzz_RequirementsDistinctAndInRange(bytes32 seed, uint8 k, uint64 numParams) public view {
        numParams = uint64(bound(numParams, 2, 1 << 40));
        k = uint8(bound(k, 1, numParams / 2 < 255 ? numParams / 2 : 255));
        uint256[] memory r = chain.computeRequirements(seed, k, numParams);
        assertEq(r.length, k, "k values");
        for (uint256 i; i < r.length; ++i) {
            assertTrue(r[i] < 2 * uint256(numParams), "in [0, 2|W|)");
            for (uint256 j; j < i; ++j) assertTrue(r[i] / 2 != r[j] / 2, "one requirement per weight");
        }
    }

    function test_RevertWhen_RequirementsDifficultyZero() public {
        vm.expectRevert(abi.encodeWithSelector(PoLChain.InvalidDifficulty.selector, 0, 3866));
        chain.computeRequirements(bytes32(0), 0, 3866);
    }

    function testFuzz_RevertWhen_RequirementsDifficultyOutOfRange(uint256 k, uint256 numParams) public {
        numParams = bound(numParams, 1, 1 << 40);
        vm.assume(k == 0 || k > 255 || 2 * k > numParams);
        vm.expectRevert(abi.encodeWithSelector(PoLChain.InvalidDifficulty.selector, k, numParams));
        chain.computeRequirements(bytes32(0), k, numParams);
    }
}

/// @dev The golden vectors pytest checks, read from the same files.
contract PoLChainVectorsTest is PoLChainFixture {
    function readVectors(string memory name) internal view returns (string memory) {
        return vm.readFile(string.concat(vm.projectRoot(), "/tests/vectors/", name));
    }

    function key(uint256 i, string memory field) internal pure returns (string memory) {
        return string.concat(".cases[", vm.toString(i), "].", field);
    }

    function test_GoldenRequirements() public view {
        string memory json = readVectors("requirements.json");
        uint256 n = vm.parseJsonUint(json, ".count");
        assertTrue(n > 0, "vectors present");
        for (uint256 i; i < n; ++i) {
            bytes32 seed = vm.parseJsonBytes32(json, key(i, "seed"));
            uint256 k = vm.parseJsonUint(json, key(i, "k"));
            uint256 numParams = vm.parseJsonUint(json, key(i, "numParams"));
            uint256[] memory want = vm.parseJsonUintArray(json, key(i, "requirements"));
            uint256[] memory got = chain.computeRequirements(seed, k, numParams);
            assertEq(got.length, want.length, "length");
            for (uint256 j; j < want.length; ++j) assertEq(got[j], want[j], "requirement");
        }
    }

    function test_GoldenHeaderHashes() public view {
        string memory json = readVectors("headers.json");
        uint256 n = vm.parseJsonUint(json, ".count");
        assertTrue(n > 0, "vectors present");
        for (uint256 i; i < n; ++i) {
            uint256[] memory idx = vm.parseJsonUintArray(json, key(i, "indices"));
            uint32[] memory p = new uint32[](idx.length);
            for (uint256 j; j < idx.length; ++j) p[j] = uint32(idx[j]);
            PoLChain.Header memory h = PoLChain.Header({
                parent: vm.parseJsonBytes32(json, key(i, "parent")),
                height: uint64(vm.parseJsonUint(json, key(i, "height"))),
                taskSpecHash: vm.parseJsonBytes32(json, key(i, "taskSpecHash")),
                weightsHash: vm.parseJsonBytes32(json, key(i, "weightsHash")),
                newWeightsHash: vm.parseJsonBytes32(json, key(i, "newWeightsHash")),
                indices: p,
                correctBefore: uint32(vm.parseJsonUint(json, key(i, "correctBefore"))),
                correctAfter: uint32(vm.parseJsonUint(json, key(i, "correctAfter"))),
                difficulty: uint8(vm.parseJsonUint(json, key(i, "difficulty"))),
                miner: vm.parseJsonAddress(json, key(i, "miner"))
            });
            assertEq(keccak256(abi.encode(h)), vm.parseJsonBytes32(json, key(i, "hash")), "abi.encode hash");
            assertEq(chain.hashHeader(h), vm.parseJsonBytes32(json, key(i, "hash")), "contract hash");
            assertEq(keccak256(abi.encode(h)), keccak256(vm.parseJsonBytes(json, key(i, "encoding"))), "encoding");
        }
    }

    /// @dev submitBlock hashes its calldata in assembly, not abi.encode(h): the two must agree for
    /// every header it accepts, or the chain would record a hash no one else computes.
    function testFuzz_SubmitHashIsKeccakOfAbiEncode(bytes32 w1, uint32 before, uint32 gain, address miner, uint32[4] memory p)
        public
    {
        before = uint32(bound(before, G_CORRECT - TOLERANCE, type(uint24).max - 1));
        gain = uint32(bound(gain, 1, type(uint24).max - before));
        PoLChain.Header memory h = nextHeader(w1, before, gain);
        h.miner = miner;
        for (uint256 i; i < 4; ++i) h.indices[i] = p[i];
        bytes32 got = submit(h);
        assertEq(got, keccak256(abi.encode(h)), "submitBlock's hash");
        assertEq(chain.tipHash(), keccak256(abi.encode(h)), "tip");
    }

    function test_SubmitHashIsKeccakOfAbiEncode() public {
        PoLChain.Header memory h = nextHeader(keccak256("w1"), G_CORRECT, 1);
        h.miner = address(type(uint160).max);
        assertEq(submit(h), keccak256(abi.encode(h)), "submitBlock's hash");
    }
}
